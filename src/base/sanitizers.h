// Whether this build runs under AddressSanitizer. Object caches (streams
// kept for reuse, the HTTP/2 session's block cache) are off there, so that
// every object's lifetime is the allocator's to check: a use after free of
// a cached object would otherwise go unseen.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define WEFT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_ASAN 1
#endif
#endif
#ifndef WEFT_ASAN
#define WEFT_ASAN 0
#endif

namespace weft {

inline constexpr bool kAsan = WEFT_ASAN;

}  // namespace weft
