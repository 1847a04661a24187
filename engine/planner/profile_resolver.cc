#include "engine/planner/profile_resolver.h"

#include "absl/strings/str_cat.h"

namespace apex4 {
namespace {

std::string Describe(const DeviceIdentity& d) {
  return absl::StrCat(d.backend, " '", d.name, "' uuid=", d.uuid, " driver=", d.driver);
}

}  // namespace

absl::StatusOr<ResolvedProfile> ResolveNodeProfile(const std::string& path,
                                                   const DeviceIdentity& device,
                                                   const ProbeFunction& probe) {
  std::string why_probe;
  if (path.empty()) {
    why_probe = "no profile path given";
  } else {
    absl::StatusOr<NodeProfile> from_file = ReadNodeProfile(path);
    if (!from_file.ok()) {
      why_probe = std::string(from_file.status().message());
    } else if (!(from_file->device == device)) {
      why_probe = absl::StrCat(path, " was measured on ", Describe(from_file->device),
                               ", not on this ", Describe(device));
    } else {
      return ResolvedProfile{*std::move(from_file), false,
                             absl::StrCat("loaded ", path, " (", Describe(device), ")")};
    }
  }
  absl::StatusOr<NodeProfile> measured = probe();
  if (!measured.ok()) {
    return absl::Status(measured.status().code(),
                        absl::StrCat("probing the node failed (", why_probe,
                                     "): ", measured.status().message()));
  }
  ResolvedProfile resolved{*std::move(measured), true,
                           absl::StrCat("probed ", Describe(device), " because ", why_probe)};
  if (!path.empty()) {
    const absl::Status saved = WriteNodeProfile(resolved.profile, path);
    absl::StrAppend(&resolved.explanation, saved.ok() ? absl::StrCat("; saved to ", path)
                                                      : absl::StrCat("; not saved: ",
                                                                     saved.message()));
  }
  return resolved;
}

}  // namespace apex4
