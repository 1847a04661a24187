// Finds the caller's stop strings in streamed text. Text that might be the start of a stop string
// is held back until the next piece shows whether it is, so a stop string never reaches the
// client, not even split across tokens. One per sequence; not thread-safe.
#ifndef APEX4_SERVER_STOP_MATCHER_H_
#define APEX4_SERVER_STOP_MATCHER_H_

#include <string>
#include <string_view>
#include <vector>

namespace apex4 {

class StopMatcher {
 public:
  // Empty strings in `stops` are ignored.
  explicit StopMatcher(std::vector<std::string> stops);

  struct Output {
    std::string text;      // safe to send now
    bool stopped = false;  // a stop string was found; `text` ends just before it
  };
  // Adds the next piece of text (valid UTF-8). After `stopped`, further calls return nothing.
  Output Append(std::string_view text);
  // At the end of the stream: the text held back, which turned out not to be a stop string.
  std::string Flush();

 private:
  // Length of the longest suffix of held_ that is a proper prefix of some stop string.
  size_t PossibleStopSuffixLength() const;

  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace apex4

#endif  // APEX4_SERVER_STOP_MATCHER_H_
