// What a hostile or broken HTTP/2 peer did, as the codec (http2/codec.h)
// counts it: small and apart from the codec so that the stat blocks
// (proxy/stats.h) can size their counters without pulling it in.
#pragma once

#include <cstddef>
#include <cstdint>

namespace weft::http2 {

enum class Violation : uint8_t {
  // Connection errors: the peer gets GOAWAY and the connection closes.
  kProtocolError,      // GOAWAY PROTOCOL_ERROR (or FRAME_SIZE / COMPRESSION / STREAM_CLOSED ...)
  kFlowControl,        // GOAWAY FLOW_CONTROL_ERROR: a window pushed past 2^31-1
  kFlood,              // SETTINGS / PING floods (replies piling up unread), too many settings
  kContinuationFlood,  // a header block in more CONTINUATION frames than allowed
  kEmptyFrames,        // DATA frames with nothing in them, past their rate
  kRapidReset,         // streams reset (by the peer, or for its errors) past their rate or count
  // Stream errors: that stream is reset (or answered), the connection goes on.
  kStreamProtocolError,  // RST_STREAM: bad pseudo-headers, upper case, connection-specific
                         // fields, content-length against DATA, frames on closed streams
  kRefusedStream,        // more concurrent streams than advertised
  kHeaderOverflow,       // a header list over max_header_list_bytes: 431 (or reset)
  kCount,
};
inline constexpr size_t kViolationCount = static_cast<size_t>(Violation::kCount);

// The name used in stats and logs ("protocol_error", "rapid_reset", ...).
constexpr const char* ViolationName(Violation v) {
  switch (v) {
    case Violation::kProtocolError:
      return "protocol_error";
    case Violation::kFlowControl:
      return "flow_control";
    case Violation::kFlood:
      return "flood";
    case Violation::kContinuationFlood:
      return "continuation_flood";
    case Violation::kEmptyFrames:
      return "empty_frames";
    case Violation::kRapidReset:
      return "rapid_reset";
    case Violation::kStreamProtocolError:
      return "stream_protocol_error";
    case Violation::kRefusedStream:
      return "refused_stream";
    case Violation::kHeaderOverflow:
      return "header_overflow";
    case Violation::kCount:
      break;
  }
  return "?";
}

}  // namespace weft::http2
