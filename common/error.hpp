#pragma once
// The error types every moesim module throws: one line for the user, naming the
// argument, file, line or key.
#include <stdexcept>
#include <string>
#include <utility>

namespace moesim {

// Every user-facing error: one line naming the argument, file, line or key.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An error about one configuration key. The key travels as data, so a caller that
// knows where the key was set (file and line) can say so without reading it back
// out of the message.
class KeyError : public Error {
 public:
  KeyError(std::string key, const std::string& message) : Error(message), key_(std::move(key)) {}
  const std::string& key() const { return key_; }

 private:
  std::string key_;
};

}  // namespace moesim
