#pragma once
// C interface of the SentencePiece shim (spm_shim.cpp). Debian's libsentencepiece
// exports its bundled copy of protobuf-lite, which collides with the system
// libprotobuf that LibTorch loads (a crash in static initialisation). The shim is
// therefore a separate module that tokenizer.cpp dlopens with RTLD_LOCAL |
// RTLD_DEEPBIND, so each protobuf stays with its own users.
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Returns the next training sentence (not NUL-terminated) or 0 when done.
typedef int (*moesim_spm_next_fn)(void* ctx, const char** data, size_t* len);

// All functions return 0 on success; on failure *err is a malloc'd message.
// Buffers handed out (*err, *out, *ids) are freed with moesim_spm_free.
void* moesim_spm_new(void);
void moesim_spm_delete(void* h);
void moesim_spm_free(void* p);
int moesim_spm_load(void* h, const char* proto, size_t n, char** err);
int moesim_spm_train(const char* const* keys, const char* const* values, size_t nargs, moesim_spm_next_fn next,
                     void* ctx, char** out, size_t* out_len, char** err);
int moesim_spm_encode(void* h, const char* text, size_t n, int** ids, size_t* count, char** err);
int moesim_spm_decode(void* h, const int* ids, size_t count, char** out, size_t* out_len, char** err);
int moesim_spm_piece_size(void* h);
int moesim_spm_eos_id(void* h);

#ifdef __cplusplus
}
#endif
