/**
 * CRC-16/CCITT-FALSE (alias CRC-16/IBM-3740), PROTOCOL.md §3: polynomial 0x1021, initial value 0xFFFF, not
 * reflected, no final XOR; the check value over ASCII `123456789` is 0x29B1.
 */

const table = (() => {
  const entries = new Uint16Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    entries[byte] = crc;
  }
  return entries;
})();

/** CRC-16/CCITT-FALSE of `data`. */
export function crc16(data: Uint8Array): number {
  let crc = 0xffff;
  for (const byte of data) crc = ((crc << 8) & 0xffff) ^ (table[((crc >> 8) ^ byte) & 0xff] as number);
  return crc;
}
