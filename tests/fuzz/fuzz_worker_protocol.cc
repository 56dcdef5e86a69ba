// libFuzzer target: the worker protocol handler on the daemon's side
// (WorkerHub). Each input is one session: a worker joins, is assigned four
// jobs, then sends the input's messages (the input is the wire form of
// `repeated WorkerMessage messages = 1`); ids are mapped onto the open
// assignments so outputs and results reach them. The hub must refuse what
// is malformed (the session then ends, as the gRPC handler does) and never
// crash, whatever the order: output after result, results twice, chunks
// over the limit, a second hello.
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>

#include "asflow/v1/worker.pb.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/stubs/logging.h"
#include "server/worker_hub.h"

namespace {

asflow::WorkerHub& Hub() {
  static asflow::WorkerHub* hub = [] {
    asflow::RunnerEvents events;
    events.on_done = [](asflow::ExecResult) {};
    events.on_progress = [](asflow::ExecId, int64_t, int64_t) {};
    events.on_spawn = [](asflow::ExecId, pid_t) {};
    events.on_pool_slots = [](const std::string&, int) {};
    events.on_self_progress = [](asflow::ExecId, asflow::SelfProgress) {};
    asflow::AtomicFileOptions files;
    files.sync = false;
    asflow::WorkerHubOptions options;
    options.max_chunk_bytes = 4096;  // small, so the fuzzer reaches it
    return new asflow::WorkerHub(options, files, events);
  }();
  return *hub;
}

const std::string& Workspace() {
  static const std::string* dir = [] {
    char tmpl[] = "/tmp/asflow-fuzz-worker-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) abort();
    // Removed when libFuzzer exits (every run in ctest made one before).
    atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(Workspace(), ec);
    });
    // Invalid UTF-8 in a string field is refused by the parser, as it
    // should be; its log line per input only slowed the fuzzer down.
    google::protobuf::SetLogHandler(nullptr);
    return new std::string(tmpl);
  }();
  return *dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static asflow::ExecId next_id = 1;
  asflow::WorkerHub& hub = Hub();
  asflow::v1::WorkerHello hello;
  hello.add_pools("remote");
  hello.set_slots(4);
  hello.set_name("fuzz");
  auto session = hub.Join(hello, "fuzz", [] {});
  if (!session.ok()) abort();
  const asflow::ExecId base = next_id;
  for (int i = 0; i < 4; ++i) {
    asflow::ExecJob job;
    job.id = next_id++;
    job.pool = "remote";
    job.workspace = Workspace();
    job.output = i % 2 == 0 ? "out.txt" : "out.jsonl.zst";
    job.process.argv = {"true"};
    job.label = "fuzz(i=" + std::to_string(i) + ")";
    hub.Start(std::move(job));
  }
  google::protobuf::io::CodedInputStream in(data, static_cast<int>(size));
  for (int n = 0; n < 256; ++n) {
    uint32_t tag = in.ReadTag();
    if (tag != ((1 << 3) | 2)) break;
    std::string bytes;
    uint32_t length = 0;
    if (!in.ReadVarint32(&length) || !in.ReadString(&bytes, static_cast<int>(length))) break;
    asflow::v1::WorkerMessage message;
    if (!message.ParseFromString(bytes)) break;
    if (message.has_output()) message.mutable_output()->set_id(base + (message.output().id() & 3));
    if (message.has_result()) message.mutable_result()->set_id(base + (message.result().id() & 3));
    if (!hub.Handle(**session, message).ok()) break;  // the handler ends the stream
  }
  hub.Leave(**session, "the fuzz input ended");
  return 0;
}
