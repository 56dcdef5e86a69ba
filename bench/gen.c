/* W4's generator: prints JSON lines until BYTES bytes (argv[1]) are written.
 * Values vary (counter + xorshift) so zstd has real work to do; output is
 * built in a 1 MiB buffer so the generator runs at several GB/s and is not
 * the bottleneck. Lines are cut only at the very end to hit BYTES exactly. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int WriteAll(const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(1, p, n);
    if (w < 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: gen BYTES\n");
    return 2;
  }
  unsigned long long left = strtoull(argv[1], NULL, 10);
  static char buf[1 << 20];
  static const char hex[] = "0123456789abcdef";
  uint64_t x = 88172645463325252ull, id = 0;
  size_t used = 0;
  while (left > 0) {
    char line[256];
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    char tok[17];
    for (int k = 0; k < 16; ++k) tok[k] = hex[(x >> (4 * k)) & 15];
    tok[16] = 0;
    int n = snprintf(line, sizeof line,
                     "{\"id\":%llu,\"user\":\"u%05llu\",\"score\":%llu,"
                     "\"tag\":\"%s\",\"text\":\"lorem ipsum dolor sit amet\"}\n",
                     (unsigned long long)id, (unsigned long long)(x % 50000),
                     (unsigned long long)(x >> 44), tok);
    ++id;
    if ((unsigned long long)n > left) n = (int)left;
    if (used + (size_t)n > sizeof buf) {
      if (WriteAll(buf, used) != 0) return 1;
      used = 0;
    }
    memcpy(buf + used, line, (size_t)n);
    used += (size_t)n;
    left -= (unsigned long long)n;
  }
  return WriteAll(buf, used) != 0;
}
