#include "engine/planner/node_profile.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace apex4 {
namespace {

using nlohmann::json;

absl::Status FieldError(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("node profile: field '", field, "' ", why));
}

// Reads a required member of `object` as T, naming the full field path on failure.
template <typename T>
absl::StatusOr<T> Required(const json& object, const std::string& path, const char* key) {
  const std::string field = path.empty() ? key : absl::StrCat(path, ".", key);
  if (!object.is_object() || !object.contains(key)) return FieldError(field, "is missing");
  try {
    return object.at(key).get<T>();
  } catch (const json::exception&) {
    return FieldError(field, "has the wrong type");
  }
}

absl::StatusOr<double> RequiredRate(const json& object, const std::string& path,
                                    const char* key) {
  auto value = Required<double>(object, path, key);
  if (!value.ok()) return value.status();
  if (!std::isfinite(*value) || *value < 0) {
    return FieldError(absl::StrCat(path, ".", key), absl::StrCat("must be a finite rate >= 0, got ",
                                                                   *value));
  }
  return *value;
}

}  // namespace

double NodeProfile::rho() const {
  const double matrix = std::max(throughput.matrix_int4_ops, throughput.matrix_int8_ops);
  return throughput.fp32_fma_flops > 0 ? matrix / throughput.fp32_fma_flops : 0.0;
}

std::string NodeProfileToJson(const NodeProfile& p) {
  json timings = json::array();
  for (const KernelTiming& t : p.timings) {
    timings.push_back({{"kernel", t.kernel}, {"granularity", t.granularity}, {"m", t.m},
                       {"n", t.n}, {"k", t.k}, {"seconds", t.seconds}});
  }
  const json doc = {
      {"format", kNodeProfileFormat},
      {"version", p.version},
      {"created_utc", p.created_utc},
      {"device",
       {{"backend", p.device.backend},
        {"name", p.device.name},
        {"uuid", p.device.uuid},
        {"driver", p.device.driver}}},
      {"clock_mhz", p.clock_mhz},
      {"throughput",
       {{"matrix_int4_ops", p.throughput.matrix_int4_ops},
        {"matrix_int8_ops", p.throughput.matrix_int8_ops},
        {"matrix_fp16_ops", p.throughput.matrix_fp16_ops},
        {"fp32_fma_flops", p.throughput.fp32_fma_flops},
        {"int_to_float_ops", p.throughput.int_to_float_ops},
        {"memory_bytes_per_s", p.throughput.memory_bytes_per_s}}},
      {"rho", p.rho()},
      {"probe_seconds", p.probe_seconds},
      {"timings", timings},
  };
  return doc.dump(2);
}

absl::StatusOr<NodeProfile> NodeProfileFromJson(const std::string& text) {
  json doc = json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError("node profile: not valid JSON");
  if (!doc.is_object()) return absl::InvalidArgumentError("node profile: not a JSON object");

  auto format = Required<std::string>(doc, "", "format");
  if (!format.ok()) return format.status();
  if (*format != kNodeProfileFormat) {
    return FieldError("format", absl::StrCat("is '", *format, "', expected '", kNodeProfileFormat,
                                             "'"));
  }
  NodeProfile p;
  auto version = Required<int>(doc, "", "version");
  if (!version.ok()) return version.status();
  if (*version != kNodeProfileVersion) {
    return FieldError("version", absl::StrCat("is ", *version, "; this server reads version ",
                                              kNodeProfileVersion));
  }
  p.version = *version;

  auto created = Required<std::string>(doc, "", "created_utc");
  const json* device = doc.contains("device") ? &doc["device"] : nullptr;
  if (!created.ok()) return created.status();
  p.created_utc = *created;
  if (device == nullptr || !device->is_object()) return FieldError("device", "is missing");
  for (auto [key, out] : {std::pair<const char*, std::string*>{"backend", &p.device.backend},
                          {"name", &p.device.name},
                          {"uuid", &p.device.uuid},
                          {"driver", &p.device.driver}}) {
    auto value = Required<std::string>(*device, "device", key);
    if (!value.ok()) return value.status();
    *out = *value;
  }
  if (p.device.backend != "cpu" && p.device.backend != "cuda") {
    return FieldError("device.backend", absl::StrCat("is '", p.device.backend,
                                                     "', expected 'cpu' or 'cuda'"));
  }
  auto clock = Required<int>(doc, "", "clock_mhz");
  if (!clock.ok()) return clock.status();
  p.clock_mhz = *clock;

  const json& rates = doc.contains("throughput") ? doc["throughput"] : json();
  for (auto [key, out] :
       {std::pair<const char*, double*>{"matrix_int4_ops", &p.throughput.matrix_int4_ops},
        {"matrix_int8_ops", &p.throughput.matrix_int8_ops},
        {"matrix_fp16_ops", &p.throughput.matrix_fp16_ops},
        {"fp32_fma_flops", &p.throughput.fp32_fma_flops},
        {"int_to_float_ops", &p.throughput.int_to_float_ops},
        {"memory_bytes_per_s", &p.throughput.memory_bytes_per_s}}) {
    auto value = RequiredRate(rates, "throughput", key);
    if (!value.ok()) return value.status();
    *out = *value;
  }
  if (p.throughput.fp32_fma_flops <= 0 || p.throughput.memory_bytes_per_s <= 0) {
    return FieldError("throughput", "must have positive fp32_fma_flops and memory_bytes_per_s");
  }
  auto probe_seconds = RequiredRate(doc, "", "probe_seconds");
  if (!probe_seconds.ok()) return probe_seconds.status();
  p.probe_seconds = *probe_seconds;

  if (!doc.contains("timings") || !doc["timings"].is_array()) {
    return FieldError("timings", "is missing or not an array");
  }
  for (size_t i = 0; i < doc["timings"].size(); ++i) {
    const json& t = doc["timings"][i];
    const std::string path = absl::StrCat("timings[", i, "]");
    KernelTiming timing;
    auto kernel = Required<std::string>(t, path, "kernel");
    auto granularity = Required<std::string>(t, path, "granularity");
    auto m = Required<int64_t>(t, path, "m");
    auto n = Required<int64_t>(t, path, "n");
    auto k = Required<int64_t>(t, path, "k");
    auto seconds = Required<double>(t, path, "seconds");
    for (const absl::Status& s : {kernel.status(), granularity.status(), m.status(), n.status(),
                                  k.status(), seconds.status()}) {
      if (!s.ok()) return s;
    }
    if (*granularity != "per_channel" && *granularity != "g128") {
      return FieldError(path + ".granularity", absl::StrCat("is '", *granularity, "'"));
    }
    if (*m <= 0 || *n <= 0 || *k <= 0) return FieldError(path, "has a non-positive shape");
    if (!std::isfinite(*seconds) || *seconds <= 0) {
      return FieldError(path + ".seconds", "must be a positive time");
    }
    p.timings.push_back({*kernel, *granularity, *m, *n, *k, *seconds});
  }
  return p;
}

absl::StatusOr<NodeProfile> ReadNodeProfile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("node profile: cannot open ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto profile = NodeProfileFromJson(buffer.str());
  if (!profile.ok()) {
    return absl::Status(profile.status().code(),
                        absl::StrCat(path, ": ", profile.status().message()));
  }
  return profile;
}

absl::Status WriteNodeProfile(const NodeProfile& profile, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", tmp));
    out << NodeProfileToJson(profile) << "\n";
    if (!out.flush()) return absl::DataLossError(absl::StrCat("short write to ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace apex4
