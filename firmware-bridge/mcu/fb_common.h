/* Fieldhub firmware bridge, MCU library: shared constants and result codes (PROTOCOL.md).
 *
 * The library is C99 with no malloc, no OS calls and no global state: every buffer is the caller's, every state
 * lives in a struct the caller owns, and all I/O goes through callbacks. */
#ifndef FB_COMMON_H
#define FB_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Result codes: 0 is success, negative values are errors. */
#define FB_OK 0
#define FB_ERR_BUSY (-1)      /* window full (link) or no free telemetry slot (device): try again later */
#define FB_ERR_LINK_DOWN (-2) /* no link to the peer: wait for the link-up callback */
#define FB_ERR_TOO_LARGE (-3) /* the frame or payload does not fit a buffer or the peer's maxFrame */
#define FB_ERR_MALFORMED (-4) /* a payload that does not parse for its type (PROTOCOL.md 5.1) */
#define FB_ERR_CRC (-5)       /* a frame whose CRC does not match */
#define FB_ERR_FRAME (-6)     /* a frame shorter than 8 bytes, with the wrong version, or a len mismatch */
#define FB_ERR_COBS (-7)      /* not valid COBS, or longer than the receive buffer */
#define FB_ERR_ARG (-8)       /* an argument out of range */

#define FB_PROTOCOL_VERSION 1u
#define FB_HEADER_SIZE 6u
#define FB_FRAME_OVERHEAD 8u /* header and CRC */
#define FB_MIN_MAX_FRAME 64u
#define FB_WINDOW_MAX 8u

/* Frame types (PROTOCOL.md 4 and 5). 0x01..0x0F are link frames (unreliable), the rest reliable. */
#define FB_T_ACK 0x01u
#define FB_T_HELLO 0x02u
#define FB_T_HELLO_ACK 0x03u
#define FB_T_RESET 0x04u
#define FB_T_PING 0x05u
#define FB_T_PONG 0x06u
#define FB_T_IDENTITY 0x10u
#define FB_T_STATUS 0x11u
#define FB_T_TELEMETRY 0x20u
#define FB_T_TELEMETRY_ACK 0x21u
#define FB_T_C2D 0x22u
#define FB_T_C2D_SETTLE 0x23u
#define FB_T_TWIN_GET 0x30u
#define FB_T_TWIN 0x31u
#define FB_T_TWIN_REPORTED 0x32u
#define FB_T_TWIN_RESULT 0x33u
#define FB_T_TWIN_DESIRED 0x34u
#define FB_T_METHOD_REQUEST 0x38u
#define FB_T_METHOD_RESPONSE 0x39u
#define FB_T_TIME_REQUEST 0x3Cu
#define FB_T_TIME 0x3Du
#define FB_T_SIGN_REQUEST 0x40u
#define FB_T_SIGN_RESPONSE 0x41u
#define FB_T_ERROR 0x7Fu

#define FB_IS_RELIABLE(type) ((type) > 0x0Fu)

/* Capability bits (HELLO / HELLO_ACK). */
#define FB_CAP_SIGN 0x01u
#define FB_CAP_TWIN 0x02u
#define FB_CAP_METHODS 0x04u
#define FB_CAP_C2D 0x08u

/* ERROR codes (PROTOCOL.md 5.9). */
#define FB_EC_UNKNOWN_TYPE 1u
#define FB_EC_MALFORMED 2u
#define FB_EC_TOO_LARGE 3u
#define FB_EC_NO_IDENTITY 4u
#define FB_EC_UNSUPPORTED 5u
#define FB_EC_BUSY 6u

/* UART output: write n bytes (called from fb_link_input / fb_link_poll / the send functions). */
typedef void (*fb_write_fn)(void *ctx, const uint8_t *bytes, size_t n);

#endif
