// Command-line flags, read the same way by every subcommand: "--flag VALUE"
// and "--flag=VALUE" alike, a missing value reported by the caller.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace weft::cli {

using Args = std::vector<std::string_view>;

// The argument at args[*i] as a flag. Keeps `args` and `i`: both must
// outlive it.
class FlagArg {
 public:
  FlagArg(const Args& args, size_t* i);
  // "--dir" for both "--dir X" and "--dir=X"; the whole argument otherwise.
  // A view into `args`.
  std::string_view name() const { return name_; }
  // Its value: what follows '=', else the next argument (*i then moves
  // past it). False when there is none.
  bool Value(std::string* out);
  // name() == flag and a value was there.
  bool Is(std::string_view flag, std::string* out) { return name_ == flag && Value(out); }

 private:
  const Args& args_;
  size_t* i_;
  std::string_view name_;
  std::string_view inline_;
  bool has_inline_ = false;
};

// Reads "--flag VALUE" or "--flag=VALUE" at args[*i] into *out.
bool FlagValue(const Args& args, size_t* i, std::string_view flag, std::string* out);

}  // namespace weft::cli
