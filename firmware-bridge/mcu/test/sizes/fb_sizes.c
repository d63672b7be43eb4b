/* Prints the size of the library's structs on this host (make size). */
#include <stdio.h>

#include "fb_device.h"
#include "fb_hmac_sha256.h"

int main(void) {
  printf("sizeof(fb_cobs_decoder) = %u\n", (unsigned)sizeof(fb_cobs_decoder));
  printf("sizeof(fb_link)         = %u\n", (unsigned)sizeof(fb_link));
  printf("sizeof(fb_device)       = %u (FB_TELEMETRY_SLOTS_MAX %u, fb_link included)\n", (unsigned)sizeof(fb_device),
         (unsigned)FB_TELEMETRY_SLOTS_MAX);
  printf("sizeof(fb_sha256)       = %u\n", (unsigned)sizeof(fb_sha256));
  return 0;
}
