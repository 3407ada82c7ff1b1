/* alkey.stats(): the module's counters, as a dict, reset in a child. */
#ifndef ALKEY_STATS_H
#define ALKEY_STATS_H

#include "state.h"

/* Counts exc_type (borrowed), raised by a redis-py client or another
 * token source, in redis_timeouts when it or a base class is named
 * TimeoutError (builtins, alkey's and redis-py's), otherwise in
 * redis_errors; nothing for a MemoryError or a BaseException that is not
 * an Exception.  GIL held; sets no exception. */
void alkey_stats_count_failure(alkey_state *st, PyObject *exc_type);

PyObject *alkey_py_stats(PyObject *module, PyObject *unused);
PyObject *alkey_py_reset_stats(PyObject *module, PyObject *unused);
PyObject *alkey_py_count_invalidation(PyObject *module, PyObject *const *args,
                                      Py_ssize_t nargs);
extern const char alkey_stats_doc[];
extern const char alkey_reset_stats_doc[];
extern const char alkey_count_invalidation_doc[];

#endif
