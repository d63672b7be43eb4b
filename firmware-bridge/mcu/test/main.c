#include <string.h>

#include "runner.h"

int fb_test_failed;

static void run_table(const fb_test *t, int *passed, int *failed, const char *only) {
  for (; t->name; t++) {
    if (only && !strstr(t->name, only)) {
      continue;
    }
    fb_test_failed = 0;
    t->fn();
    if (fb_test_failed) {
      printf("FAIL %s\n", t->name);
      (*failed)++;
    } else {
      printf("ok   %s\n", t->name);
      (*passed)++;
    }
    fflush(stdout);
  }
}

int main(int argc, char **argv) {
  int passed = 0;
  int failed = 0;
  const char *only = argc > 1 ? argv[1] : 0; /* run the tests whose name contains this */
  run_table(codec_tests, &passed, &failed, only);
  run_table(fixture_tests, &passed, &failed, only);
  run_table(link_tests, &passed, &failed, only);
  run_table(device_tests, &passed, &failed, only);
  run_table(fuzz_tests, &passed, &failed, only);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
