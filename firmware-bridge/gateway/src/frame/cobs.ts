/**
 * Consistent Overhead Byte Stuffing (Cheshire and Baker, 1999), PROTOCOL.md §2: the encoded bytes hold no `0x00`,
 * so `0x00` can end every frame on the wire. Hand-written (a dozen lines) rather than one more dependency.
 */

/**
 * Encodes `data` with COBS; the result contains no `0x00` and has no delimiter appended. A final `0xFF` block is
 * not followed by a `0x01` code byte (the shortest form, PROTOCOL.md §2).
 */
export function cobsEncode(data: Uint8Array): Uint8Array {
  // At most one code byte per 254 data bytes, plus one.
  const out = new Uint8Array(data.length + Math.ceil(data.length / 254) + 1);
  let codeAt = 0;
  let write = 1;
  let code = 1;
  for (let read = 0; read < data.length; read++) {
    const byte = data[read] as number;
    if (byte === 0) {
      out[codeAt] = code;
      codeAt = write++;
      code = 1;
      continue;
    }
    out[write++] = byte;
    code++;
    if (code === 0xff) {
      out[codeAt] = code;
      // A full block at the very end closes the encoding: no empty block after it.
      if (read === data.length - 1) return out.subarray(0, write);
      codeAt = write++;
      code = 1;
    }
  }
  out[codeAt] = code;
  return out.subarray(0, write);
}

/**
 * Decodes one COBS block (without its delimiter). Returns `undefined` when the block is not valid COBS: a `0x00`
 * inside it, or a code byte pointing past its end.
 */
export function cobsDecode(encoded: Uint8Array): Uint8Array | undefined {
  const out = new Uint8Array(encoded.length);
  let read = 0;
  let write = 0;
  while (read < encoded.length) {
    const code = encoded[read++] as number;
    if (code === 0) return undefined;
    const end = read + code - 1;
    if (end > encoded.length) return undefined;
    while (read < end) {
      const byte = encoded[read++] as number;
      if (byte === 0) return undefined;
      out[write++] = byte;
    }
    // A run shorter than 254 stands for a zero, except the last run of the block.
    if (code !== 0xff && read < encoded.length) out[write++] = 0;
  }
  return out.subarray(0, write);
}
