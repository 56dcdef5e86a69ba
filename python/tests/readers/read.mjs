// Reads files the asflow Python package made, with DuckDB (@duckdb/node-api)
// and Polars (nodejs-polars): prints {file: {duckdb: {n, s}, polars: {n, s}}}
// where n is the row count and s the sum of column `a`.
// usage: node read.mjs FILE...   (python/tests/test_readers.py)
import { DuckDBInstance } from "@duckdb/node-api";
import pl from "nodejs-polars";

const files = process.argv.slice(2);
const db = await DuckDBInstance.create(":memory:");
const con = await db.connect();
const out = {};
for (const f of files) {
  const lines = !f.includes(".json.") && !f.endsWith(".json");
  const format = lines ? "newline_delimited" : "auto";
  const r = await con.runAndReadAll(
    `SELECT count(*) AS n, sum(a) AS s FROM read_json_auto('${f.replaceAll("'", "''")}', format='${format}')`);
  const row = r.getRowObjects()[0];
  const entry = { duckdb: { n: Number(row.n), s: Number(row.s) } };
  if (lines) {
    const df = pl.scanJson(f).collectSync();
    entry.polars = { n: df.height, s: Number(df.getColumn("a").sum()) };
  }
  out[f] = entry;
}
console.log(JSON.stringify(out));
