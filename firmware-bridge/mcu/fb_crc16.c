#include "fb_crc16.h"

/* Bitwise rather than table-driven: 512 bytes of table cost more flash than the cycles saved at UART speeds. */
uint16_t fb_crc16_update(uint16_t crc, const uint8_t *data, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    int bit;
    crc = (uint16_t)(crc ^ ((uint16_t)data[i] << 8));
    for (bit = 0; bit < 8; bit++) {
      crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    }
  }
  return crc;
}

uint16_t fb_crc16(const uint8_t *data, size_t n) { return fb_crc16_update(FB_CRC16_INIT, data, n); }
