/* Module state shared by every concern of alkey._native. */
#ifndef ALKEY_STATE_H
#define ALKEY_STATE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The counters of alkey.stats(), for all the module's clients together,
 * since the process started (a forked child starts again from zero).
 * They change only while the GIL is held, so they are plain increments,
 * and never while it is released: what is counted there waits in a C
 * local until the GIL is back.  See stats.c for what each one counts. */
typedef struct {
    unsigned long long tokens_looked_up;
    unsigned long long tokens_found;
    unsigned long long tokens_created;
    unsigned long long tokens_fresh;
    unsigned long long invalidations_sent;
    unsigned long long invalidations_failed;
    unsigned long long redis_round_trips;
    unsigned long long redis_errors;
    unsigned long long redis_timeouts;
    unsigned long long redis_connections_opened;
} alkey_stats;

typedef struct {
    /* Exceptions: Error is the base of the others. */
    PyObject *Error;
    PyObject *ConnectionError;
    PyObject *TimeoutError;
    PyObject *AuthenticationError;
    PyObject *ReplyError;
    PyObject *ConfigurationError;
    /* The native Redis client type. */
    PyTypeObject *ClientType;
    /* The change set of a session transaction. */
    PyTypeObject *ChangeSetType;
    /* Optional callables installed by the Python shim (NULL until set):
     * resolver(obj) -> identifier str or None, for objects the key
     * builder does not know (model instances and classes);
     * error_handler(exc) -> ignored, told of a Redis failure that the key
     * builder recovered from. */
    PyObject *resolver;
    PyObject *error_handler;
    /* A set of identifiers whose invalidation could not reach Redis yet
     * (or NULL): keys naming them are built from fresh tokens. */
    PyObject *pending;
    alkey_stats stats;
} alkey_state;

static inline alkey_state *
alkey_get_state(PyObject *module)
{
    return (alkey_state *)PyModule_GetState(module);
}

/* The state of the module that defined a heap type. */
static inline alkey_state *
alkey_type_state(PyTypeObject *type)
{
    return (alkey_state *)PyType_GetModuleState(type);
}

#endif
