/* CRC-16/CCITT-FALSE (PROTOCOL.md 3): poly 0x1021, init 0xFFFF, not reflected, no final XOR. Check 0x29B1. */
#ifndef FB_CRC16_H
#define FB_CRC16_H

#include <stddef.h>
#include <stdint.h>

#define FB_CRC16_INIT 0xFFFFu

/* Continue a CRC over n more bytes (start with FB_CRC16_INIT). */
uint16_t fb_crc16_update(uint16_t crc, const uint8_t *data, size_t n);

/* The CRC of n bytes. */
uint16_t fb_crc16(const uint8_t *data, size_t n);

#endif
