// Start-up policy for the node profile: use the profile file the node provides (a Kubernetes
// volume, or --profile) when it is valid and was measured on this very device; otherwise probe
// now and, where the path is writable, leave the fresh profile there for the next start.
// A corrupt, stale or foreign file is never fatal: it is reported and replaced.
#ifndef APEX4_ENGINE_PLANNER_PROFILE_RESOLVER_H_
#define APEX4_ENGINE_PLANNER_PROFILE_RESOLVER_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/planner/node_profile.h"

namespace apex4 {

struct ResolvedProfile {
  NodeProfile profile;
  bool probed = false;      // measured now rather than read from the file
  std::string explanation;  // for the start-up log: where the profile came from and why
};

using ProbeFunction = std::function<absl::StatusOr<NodeProfile>()>;

// `path` may be empty (no file: always probe, nothing saved). Fails only when probing fails.
absl::StatusOr<ResolvedProfile> ResolveNodeProfile(const std::string& path,
                                                   const DeviceIdentity& device,
                                                   const ProbeFunction& probe);

}  // namespace apex4

#endif  // APEX4_ENGINE_PLANNER_PROFILE_RESOLVER_H_
