// The limits of an HTTP/2 connection (http2/codec.h), apart from the codec
// so that configuration can name them without pulling in the codec.
#pragma once

#include <cstdint>

namespace weft::http2 {

// The limits a connection advertises and enforces. Each is explicit: the
// peer learns them from SETTINGS, and one that breaks them is reset (a
// stream) or sent GOAWAY (the connection).
struct Settings {
  uint32_t max_concurrent_streams = 1024;      // streams the peer may open at once
  uint32_t initial_window = 256 * 1024;        // per stream: body bytes in flight to us
  uint32_t connection_window = 1024 * 1024;    // per connection: all streams together
  uint32_t max_frame_size = 16384;             // largest frame payload we accept
  uint32_t max_header_list_bytes = 64 * 1024;  // decoded head (RFC 9113 6.5.2 size)
  uint32_t header_table_size = 4096;           // HPACK dynamic table we keep for the peer
  uint32_t send_buffer = 64 * 1024;  // per stream: body bytes queued before SendBody waits
  // Per connection: body bytes queued by all its streams together. Past it
  // a SendBody waits before queueing more (a peer that opens many streams
  // and reads none holds this much, not send_buffer times its streams).
  uint32_t connection_send_buffer = 1024 * 1024;
  // Streams the peer resets (or that end in a protocol error) before their
  // response, per connection: a burst, then so many per second. Past it
  // the connection gets GOAWAY (ENHANCE_YOUR_CALM): rapid reset.
  uint32_t reset_burst = 1000;
  uint32_t reset_rate = 33;
  // ... and over the connection's life, whatever the rate (a slow rapid
  // reset): past it, GOAWAY (ENHANCE_YOUR_CALM) too.
  uint32_t max_reset_streams = 10000;
  // DATA frames that carry nothing and do not end their stream, per
  // connection and second (a burst of as many, then as many a second):
  // past it, GOAWAY (ENHANCE_YOUR_CALM). They cost work and move nothing.
  uint32_t max_empty_data_per_second = 100;
};

}  // namespace weft::http2
