#include "server/stop_matcher.h"

#include <algorithm>
#include <utility>

namespace apex4 {

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (std::string& stop : stops) {
    if (!stop.empty()) stops_.push_back(std::move(stop));
  }
}

StopMatcher::Output StopMatcher::Append(std::string_view text) {
  Output output;
  if (stopped_) return output;
  held_.append(text);
  size_t first_match = std::string::npos;
  for (const std::string& stop : stops_) first_match = std::min(first_match, held_.find(stop));
  if (first_match != std::string::npos) {
    output.text = held_.substr(0, first_match);
    output.stopped = stopped_ = true;
    held_.clear();
    return output;
  }
  // Stop strings are valid UTF-8, so a held suffix starts on a character boundary and the
  // released part is valid UTF-8 too.
  const size_t release = held_.size() - PossibleStopSuffixLength();
  output.text = held_.substr(0, release);
  held_.erase(0, release);
  return output;
}

std::string StopMatcher::Flush() {
  std::string rest;
  rest.swap(held_);
  return rest;
}

size_t StopMatcher::PossibleStopSuffixLength() const {
  size_t longest = 0;
  for (const std::string& stop : stops_) {
    const size_t max_length = std::min(held_.size(), stop.size() - 1);
    for (size_t length = max_length; length > longest; --length) {
      if (std::string_view(held_).substr(held_.size() - length) ==
          std::string_view(stop).substr(0, length)) {
        longest = length;
        break;
      }
    }
  }
  return longest;
}

}  // namespace apex4
