// A growable byte buffer with a consumed prefix: reads append at the end,
// parsers look at [data(), data()+size()), consumers drop from the front.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>

namespace weft::io {

class Buffer {
 public:
  explicit Buffer(size_t initial = 4096) : cap_(initial) {}

  // Pointers into the bytes stay valid until Reserve() (which may move or
  // reallocate them), Shrink() or the Buffer's destruction.
  char* data() { return buf_.get() + start_; }
  const char* data() const { return buf_.get() + start_; }
  size_t size() const { return end_ - start_; }
  bool empty() const { return start_ == end_; }
  size_t capacity() const { return cap_; }

  void Consume(size_t n) {
    start_ += n;
    if (start_ >= end_) start_ = end_ = 0;
  }
  void Clear() { start_ = end_ = 0; }

  // Makes room for at least `want` bytes after the data, moving the data to
  // the front and growing (doubling, up to max_cap) as needed. Returns false
  // when even max_cap cannot hold size() + 1 more byte.
  bool Reserve(size_t want, size_t max_cap) {
    if (!buf_) buf_.reset(new char[cap_]);
    if (cap_ - end_ >= want) return true;
    if (start_ > 0) {
      std::memmove(buf_.get(), buf_.get() + start_, end_ - start_);
      end_ -= start_;
      start_ = 0;
      if (cap_ - end_ >= want) return true;
    }
    size_t ncap = cap_;
    while (ncap - end_ < want && ncap < max_cap) ncap *= 2;
    if (ncap > max_cap) ncap = max_cap;
    if (ncap <= end_) return false;
    if (ncap != cap_) {
      std::unique_ptr<char[]> n(new char[ncap]);
      std::memcpy(n.get(), buf_.get(), end_);
      buf_ = std::move(n);
      cap_ = ncap;
    }
    return true;
  }
  char* write_ptr() { return buf_.get() + end_; }
  size_t writable() const { return cap_ - end_; }
  void Commit(size_t n) { end_ += n; }

  // Gives all memory back when idle (allocated again, as large, when next
  // needed).
  void Free() {
    if (empty()) buf_.reset();
  }
  // Gives memory back when idle and larger than `keep` bytes.
  void Shrink(size_t keep) {
    if (empty() && cap_ > keep) {
      buf_.reset();
      cap_ = keep;
    }
  }

 private:
  std::unique_ptr<char[]> buf_;
  size_t cap_;
  size_t start_ = 0;
  size_t end_ = 0;
};

}  // namespace weft::io
