// ACL policies arrive from anyone holding an acl:write token, and their
// documents come back from the store on every replica: any rules text must
// be refused cleanly or parse into rules whose stored form parses back to
// the same decisions.
#include <cstdint>
#include <memory>
#include <string>

#include "control/acl.h"

using weft::control::acl::Access;
using weft::control::acl::Authz;
using weft::control::acl::Resource;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)weft::control::acl::ParseTokenDoc(text);
  auto rules = weft::control::acl::ParseRules(text);
  if (!rules.ok()) return 0;
  weft::control::acl::Policy p;
  p.id = "id";
  p.name = "fuzz";
  p.rules_text = text;
  auto back = weft::control::acl::ParsePolicyDoc(weft::control::acl::PolicyDoc(p));
  if (!back.ok()) __builtin_trap();
  Authz a({std::make_shared<const weft::control::acl::Rules>(rules.value())}, "token");
  Authz b({back->rules}, "token");
  for (Resource r : {Resource::kService, Resource::kNode, Resource::kConfig, Resource::kOperator,
                     Resource::kAcl}) {
    for (const char* name : {"", "web", "Route/default/web", "a", "payments"}) {
      for (Access need : {Access::kRead, Access::kWrite}) {
        if (a.Allowed(r, name, need) != b.Allowed(r, name, need)) __builtin_trap();
        // write implies read
        if (need == Access::kWrite && a.Allowed(r, name, need) &&
            !a.Allowed(r, name, Access::kRead))
          __builtin_trap();
      }
    }
  }
  return 0;
}
