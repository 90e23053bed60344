#include "base/prometheus.h"

namespace weft::prom {

void AppendLabelValue(std::string* out, std::string_view v) {
  for (char c : v) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '"':
        out->append("\\\"");
        break;
      case '\n':
        out->append("\\n");
        break;
      default:
        out->push_back(c);
    }
  }
}

Labels::Labels(std::initializer_list<std::pair<std::string_view, std::string_view>> kv) {
  for (const auto& [n, v] : kv) *this = With(n, v);
}

Labels Labels::With(std::string_view name, std::string_view value) const {
  Labels l = *this;
  if (!l.text_.empty()) l.text_.push_back(',');
  l.text_.append(name).append("=\"");
  AppendLabelValue(&l.text_, value);
  l.text_.push_back('"');
  return l;
}

bool WantsOpenMetrics(std::string_view accept) {
  return accept.find("application/openmetrics-text") != std::string_view::npos;
}

void Writer::Sample(std::string_view family, const char* type, const char* help,
                    std::string_view sample, const Labels& l, std::string_view value,
                    std::string_view exemplar) {
  auto it = index_.find(family);
  if (it == index_.end()) {
    it = index_.emplace(std::string(family), families_.size()).first;
    families_.push_back({std::string(family), type, help, {}});
  }
  std::string& out = families_[it->second].lines;
  out.append(sample);
  if (!l.text().empty()) out.append("{").append(l.text()).append("}");
  out.push_back(' ');
  out.append(value);
  if (openmetrics_ && !exemplar.empty()) out.append(" # ").append(exemplar);
  out.push_back('\n');
}

void Writer::Counter(std::string_view name, const char* help, const Labels& l, uint64_t v) {
  // OpenMetrics names the family without the sample's _total.
  std::string_view family = name;
  if (openmetrics_ && family.size() > 6 && family.substr(family.size() - 6) == "_total")
    family.remove_suffix(6);
  Sample(family, "counter", help, name, l, std::to_string(v));
}

void Writer::Gauge(std::string_view name, const char* help, const Labels& l, int64_t v) {
  Sample(name, "gauge", help, name, l, std::to_string(v));
}

std::string Writer::Finish() const {
  std::string out;
  for (const Family& f : families_) {
    out.append("# HELP ").append(f.name).push_back(' ');
    // HELP text escapes backslash and newline.
    for (const char* p = f.help; *p; ++p) {
      if (*p == '\\') {
        out.append("\\\\");
      } else if (*p == '\n') {
        out.append("\\n");
      } else if (*p == '"' && openmetrics_) {
        out.append("\\\"");
      } else {
        out.push_back(*p);
      }
    }
    out.append("\n# TYPE ").append(f.name).append(" ").append(f.type).append("\n");
    out.append(f.lines);
  }
  if (openmetrics_) out.append("# EOF\n");
  return out;
}

}  // namespace weft::prom
