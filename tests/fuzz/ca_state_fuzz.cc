// The CA state document (`ca/root`) is read from the store, which an
// attacker with store access may have written: any bytes must be refused
// or parse into a state that round-trips through its encrypted form.
#include <cstdint>
#include <string>

#include "control/ca_state.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65536) return 0;
  static const std::string kKek(64, 'k');
  auto s =
      weft::control::CaState::Parse(std::string(reinterpret_cast<const char*>(data), size), kKek);
  if (!s.ok()) {
    if (s.status().message().empty()) __builtin_trap();
    return 0;
  }
  (void)s->Trusted(1000);
  (void)s->Signing(1000);
  auto back = weft::control::CaState::Parse(s->ToJson(kKek), kKek);
  if (!back.ok() || back->roots.size() != s->roots.size()) __builtin_trap();
  for (size_t i = 0; i < s->roots.size(); ++i)
    if (back->roots[i].key_pem != s->roots[i].key_pem) __builtin_trap();
  weft::control::CaState copy = s.value();
  (void)copy.DropRetired(1000);
  return 0;
}
