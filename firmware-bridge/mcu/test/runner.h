/* A minimal test runner: one line per test, then "N passed, N failed"; exit code 1 on any failure. */
#ifndef FB_TEST_RUNNER_H
#define FB_TEST_RUNNER_H

#include <stdio.h>

extern int fb_test_failed;

#define CHECK(cond)                                                                                                \
  do {                                                                                                             \
    if (!(cond)) {                                                                                                 \
      printf("    check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);                                       \
      fb_test_failed = 1;                                                                                          \
      return;                                                                                                      \
    }                                                                                                              \
  } while (0)

#define CHECK_MSG(cond, ...)                                                                                       \
  do {                                                                                                             \
    if (!(cond)) {                                                                                                 \
      printf("    check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond);                                       \
      printf(__VA_ARGS__);                                                                                         \
      printf("\n");                                                                                                \
      fb_test_failed = 1;                                                                                          \
      return;                                                                                                      \
    }                                                                                                              \
  } while (0)

typedef struct fb_test {
  const char *name;
  void (*fn)(void);
} fb_test;

/* Each test file exports its table. */
extern const fb_test codec_tests[];
extern const fb_test fixture_tests[];
extern const fb_test link_tests[];
extern const fb_test device_tests[];
extern const fb_test fuzz_tests[];

/* A seeded PRNG (xorshift32): the same faults on every run. */
typedef struct fb_rng {
  unsigned long s;
} fb_rng;

static inline unsigned fb_rand(fb_rng *r) {
  unsigned long x = r->s & 0xFFFFFFFFul;
  x ^= (x << 13) & 0xFFFFFFFFul;
  x ^= x >> 17;
  x ^= (x << 5) & 0xFFFFFFFFul;
  r->s = x;
  return (unsigned)(x & 0x7FFFFFFFul);
}

#endif
