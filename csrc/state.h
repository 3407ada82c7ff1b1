/* Module state shared by every concern of alkey._native. */
#ifndef ALKEY_STATE_H
#define ALKEY_STATE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

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
