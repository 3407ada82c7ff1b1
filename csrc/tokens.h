/* Token lookup: one MGET (identifiers and their epochs), SET NX for the
 * missing, fresh tokens on failure. */
#ifndef ALKEY_TOKENS_H
#define ALKEY_TOKENS_H

#include "state.h"

/* A token is 22 characters: 128 random bits in unpadded base64url. */
#define ALKEY_TOKEN_LEN 22

/* Writes a new random token to out (not NUL-terminated).  Safe without the
 * GIL.  Returns 0, or -1 (errno set) when the system has no randomness. */
int alkey_random_token(char out[ALKEY_TOKEN_LEN]);

/* Reads a ttl argument: a positive int of seconds.  0, or -1 with an
 * exception set. */
int alkey_ttl_arg(PyObject *obj, long *ttl);

PyObject *alkey_py_cache_key(PyObject *module, PyObject *const *args,
                             Py_ssize_t nargs);
PyObject *alkey_py_fetch_tokens(PyObject *module, PyObject *const *args,
                                Py_ssize_t nargs);
PyObject *alkey_py_random_token(PyObject *module, PyObject *unused);
extern const char alkey_cache_key_doc[];
extern const char alkey_fetch_tokens_doc[];
extern const char alkey_random_token_doc[];

#endif
