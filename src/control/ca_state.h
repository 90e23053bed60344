// The mesh CA's roots over time, kept as one store document (`ca/root`) so
// that every server replica sees the same rotation and acts on the same
// clock: each root is trusted from the moment it is added, signs from its
// ActivateAt, and leaves the trust bundle at its RetireAt. A rotation is a
// single write; nothing needs a leader to move it along.
//
//   t0                 t0+propagate                      t0+propagate+overlap
//   new root added  -> new root signs; workloads renew -> old root retired
//   bundle: old+new    bundle: old+new                    bundle: new
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace weft::control {

struct CaRoot {
  std::string cert_pem, key_pem;
  std::string id;           // SHA-256 fingerprint of the certificate
  int64_t activate_at = 0;  // unix seconds; signs from then on
  int64_t retire_at = 0;    // unix seconds; 0: not scheduled
};

// Roots' private keys are stored encrypted with a key-encryption key (KEK):
// AES-256-GCM under SHA-256 of the KEK's bytes, bound to the root's
// certificate (its fingerprint is the associated data), as
//   "KeyEnc": "aes256gcm:" HEX(12-byte nonce | ciphertext | 16-byte tag).
// Documents of earlier versions held "Key" in the clear: they still parse
// (plaintext_keys is set) so a server can rewrite them encrypted.
inline constexpr size_t kMinKekBytes = 32;

struct CaState {
  std::string trust_domain;
  std::vector<CaRoot> roots;    // in the order they were added
  bool plaintext_keys = false;  // parsed from a document with keys in the clear

  // The stored JSON (also the first, single-root shape: TrustDomain,
  // RootCert, Key). Encrypted keys need `kek`; a wrong one is an error.
  static Result<CaState> Parse(const std::string& json, std::string_view kek = {});
  // Keys encrypted with `kek` (empty: in the clear; tests only).
  std::string ToJson(std::string_view kek = {}) const;
  // Drops roots retired by `now` (their keys leave the document); true
  // when any was dropped.
  bool DropRetired(int64_t now);

  // The trust bundle at `now`: every root not yet retired. Pointers from
  // Trusted and Signing are into `roots`: valid until it changes.
  std::vector<const CaRoot*> Trusted(int64_t now) const;
  // The root that signs at `now`: the latest activated one still trusted;
  // null when none is.
  const CaRoot* Signing(int64_t now) const;
  // Adds `next`, signing from now + propagate_s; every root trusted now
  // retires at now + propagate_s + overlap_s. Roots already retired are
  // dropped from the document.
  void Rotate(CaRoot next, int64_t now, int64_t propagate_s, int64_t overlap_s);
};

}  // namespace weft::control
