// Early-return helpers for absl::Status / absl::StatusOr, shared by the engine and the server.
#ifndef APEX4_ENGINE_STATUS_MACROS_H_
#define APEX4_ENGINE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                                  \
  do {                                                         \
    const ::absl::Status apex4_status_ = (expr);               \
    if (!apex4_status_.ok()) return apex4_status_;             \
  } while (false)

// `ASSIGN_OR_RETURN(auto x, F())` declares x from an OK StatusOr, or returns its error.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  APEX4_ASSIGN_OR_RETURN_IMPL(APEX4_STATUS_CONCAT(apex4_statusor_, __LINE__), lhs, rexpr)

#define APEX4_ASSIGN_OR_RETURN_IMPL(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#define APEX4_STATUS_CONCAT(a, b) APEX4_STATUS_CONCAT_INNER(a, b)
#define APEX4_STATUS_CONCAT_INNER(a, b) a##b

#endif  // APEX4_ENGINE_STATUS_MACROS_H_
