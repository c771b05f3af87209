#pragma once
// Files written so that an error or a kill -9 never leaves a half-written one:
// the content goes to a temporary file in the same folder, is flushed to disk,
// renamed over the target, and the folder entry is flushed too.
#include <cstddef>
#include <string>
#include <string_view>

namespace moesim {

// Writes path atomically: path.<pid>.tmp, fsync, rename, fsync the folder. Throws Error
// naming the path (and the system's reason) on failure, leaving the old file whole.
void write_file_atomic(const std::string& path, std::string_view content);
// Moves a finished temporary file (written by someone else, e.g. LibTorch or
// gnuplot) into place with the same guarantees: fsync it, rename, fsync the folder.
void commit_file(const std::string& tmp, const std::string& path);
// The whole file; throws Error naming the path when it cannot be read.
std::string read_file(const std::string& path);
// A file mapped read-only for the object's lifetime: its bytes without a copy
// (empty for an empty file). Throws Error naming the path (and the system's
// reason) when it cannot be opened or mapped.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  std::string_view bytes() const { return {static_cast<const char*>(data_), size_}; }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

// Removes the *.tmp leftovers of writes killed before their rename.
void remove_temp_files(const std::string& dir);

// An exclusive advisory lock on dir/.lock, held for the object's lifetime: two
// processes writing into one output folder would race. Throws Error with `what`
// ("another sweep is writing into this folder") when it is taken.
class DirLock {
 public:
  DirLock(const std::string& dir, const std::string& what);
  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace moesim
