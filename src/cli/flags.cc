#include "cli/flags.h"

namespace weft::cli {

FlagArg::FlagArg(const Args& args, size_t* i) : args_(args), i_(i), name_(args[*i]) {
  if (name_.size() > 2 && name_[0] == '-') {
    const size_t eq = name_.find('=');
    if (eq != std::string_view::npos) {
      inline_ = name_.substr(eq + 1);
      name_ = name_.substr(0, eq);
      has_inline_ = true;
    }
  }
}

bool FlagArg::Value(std::string* out) {
  if (has_inline_) {
    *out = std::string(inline_);
    return true;
  }
  if (*i_ + 1 >= args_.size()) return false;
  *out = std::string(args_[++*i_]);
  return true;
}

bool FlagValue(const Args& args, size_t* i, std::string_view flag, std::string* out) {
  FlagArg f(args, i);
  return f.Is(flag, out);
}

}  // namespace weft::cli
