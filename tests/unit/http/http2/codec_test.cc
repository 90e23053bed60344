// The HTTP/2 codec's server side against a client written frame by frame,
// over a loopback socket pair driven by one event loop: what it writes is
// read back and parsed.
#include "http/http2/codec.h"

#include <gtest/gtest.h>

#include <asio.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "../loopback.h"
#include "base/counter.h"
#include "io/asio.h"
#include "io/stream.h"

namespace weft::http2 {
namespace {

using namespace std::string_view_literals;

enum : uint8_t { kHeaders = 0x1, kSettings = 0x4, kGoaway = 0x7 };
enum : uint8_t { kAck = 0x1, kEndStream = 0x1, kEndHeaders = 0x4 };

std::string Frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string f;
  f += static_cast<char>((payload.size() >> 16) & 0xff);
  f += static_cast<char>((payload.size() >> 8) & 0xff);
  f += static_cast<char>(payload.size() & 0xff);
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  for (int shift = 24; shift >= 0; shift -= 8) f += static_cast<char>((stream >> shift) & 0xff);
  f += payload;
  return f;
}

struct Parsed {
  uint8_t type, flags;
  uint32_t stream;
  std::string payload;
};

// The frames of `b`, up to the first that is not whole.
std::vector<Parsed> Frames(std::string_view b) {
  std::vector<Parsed> out;
  auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(b[i])); };
  size_t pos = 0;
  while (b.size() - pos >= 9) {
    const size_t len = (byte(pos) << 16) | (byte(pos + 1) << 8) | byte(pos + 2);
    if (b.size() - pos - 9 < len) break;
    const uint32_t stream = ((byte(pos + 5) & 0x7f) << 24) | (byte(pos + 6) << 16) |
                            (byte(pos + 7) << 8) | byte(pos + 8);
    out.push_back({static_cast<uint8_t>(byte(pos + 3)), static_cast<uint8_t>(byte(pos + 4)), stream,
                   std::string(b.substr(pos + 9, len))});
    pos += 9 + len;
  }
  return out;
}

// The client's start: the preface and an empty SETTINGS.
const std::string kClientStart = std::string(kPreface) + Frame(kSettings, 0, 0, "");
const std::string kAckFrame = Frame(kSettings, kAck, 0, "");
// GET / (static table) with :authority x.test, on stream 1.
const std::string kGet =
    Frame(kHeaders, kEndStream | kEndHeaders, 1, "\x82\x86\x84\x01\x06x.test"sv);

class Http2Server : public testing::LoopbackPair {
 protected:
  // A server connection (told EmptySettingsSent when `empty_settings_sent`)
  // is sent `before`; it answers the request that brings with a 204, and
  // is then sent `after` and given a moment to read it. Returns what the
  // server wrote; authority_ is the request's.
  std::string Exchange(bool empty_settings_sent, std::string before, std::string after) {
    auto conn = std::make_shared<ServerConnection>(
        *server_, Settings{}, Counters{&in_, &out_, violations_, &goaways_}, "test");
    if (empty_settings_sent) conn->EmptySettingsSent();
    EXPECT_TRUE(conn->Init());
    conn->Start();
    asio::write(client_->socket(), asio::buffer(before));
    bool done = false;
    asio::co_spawn(
        io_,
        [&]() -> asio::awaitable<void> {
          http::Accepted a = co_await conn->NextStream();
          if (a.stream != nullptr) {
            authority_ = std::string(a.stream->request().authority);
            http::ResponseHeaders h;
            h.status = 204;
            co_await a.stream->SendHeaders(h, true);
            conn->StreamDone(a.stream, true);
          }
          co_await client_->Write(after.data(), after.size());
          asio::steady_timer t(io_, std::chrono::milliseconds(100));
          co_await t.async_wait(kNoThrow);
          conn->Abort("test: done");
          co_await conn->Done();
          done = true;
        },
        asio::detached);
    io_.run_for(std::chrono::seconds(5));
    io_.restart();
    EXPECT_TRUE(done) << "the exchange did not finish";
    return ReadAvailable(*client_);
  }

  uint64_t Violations() const {
    uint64_t n = 0;
    for (const Counter& c : violations_) n += c.Get();
    return n;
  }

  Counter in_, out_, goaways_;
  Counter violations_[kViolationCount];
  std::string authority_;
};

// The capture listener sent the client kEmptySettings before the codec
// existed: the client acknowledges it, then the codec's own SETTINGS. Both
// ACKs are expected, and the empty frame is not written again.
TEST_F(Http2Server, TakesTheEmptySettingsAlreadySentAsItsOwn) {
  const std::string out = Exchange(true, kClientStart + kAckFrame + kGet, kAckFrame);
  EXPECT_EQ(authority_, "x.test");
  ASSERT_FALSE(std::string_view(out).starts_with(kEmptySettings));
  const std::vector<Parsed> frames = Frames(out);
  ASSERT_FALSE(frames.empty());
  // The first frame is the SETTINGS with our limits: the initial window
  // (SETTINGS_INITIAL_WINDOW_SIZE, 0x4) among them.
  EXPECT_EQ(frames[0].type, kSettings);
  EXPECT_EQ(frames[0].flags, 0);
  const uint32_t window = Settings{}.initial_window;
  std::string entry("\0\4", 2);
  for (int shift = 24; shift >= 0; shift -= 8) entry += static_cast<char>((window >> shift) & 0xff);
  EXPECT_EQ(frames[0].payload.size() % 6, 0u);
  EXPECT_NE(frames[0].payload.find(entry), std::string::npos);
  int settings = 0, response = 0;
  for (const Parsed& f : frames) {
    EXPECT_NE(f.type, kGoaway);
    if (f.type == kSettings && !(f.flags & kAck)) ++settings;
    if (f.type == kHeaders && f.stream == 1) ++response;
  }
  EXPECT_EQ(settings, 1);
  EXPECT_EQ(response, 1);
  EXPECT_EQ(goaways_.Get(), 0u);
  EXPECT_EQ(Violations(), 0u);
  EXPECT_EQ(out_.Get(), out.size()) << "the frame not written is not counted";
}

// Why the codec must be told: a connection that did not send the frame
// takes the second ACK for one of SETTINGS never sent.
TEST_F(Http2Server, AnAckOfSettingsNeverSentIsAProtocolError) {
  const std::string out = Exchange(false, kClientStart + kAckFrame + kGet, kAckFrame);
  EXPECT_EQ(authority_, "x.test");
  const std::vector<Parsed> frames = Frames(out);
  ASSERT_FALSE(frames.empty());
  const Parsed& last = frames.back();
  ASSERT_EQ(last.type, kGoaway);
  ASSERT_GE(last.payload.size(), 8u);
  EXPECT_EQ(last.payload.substr(4, 4), std::string("\0\0\0\1", 4)) << "PROTOCOL_ERROR";
}

}  // namespace
}  // namespace weft::http2
