/* The counters behind alkey.stats().
 *
 * Every counter lives in the module state (alkey_stats in state.h) and is
 * changed only with the GIL held: code that runs without it (connecting,
 * a lookup's pipelines) records what happened in a C local, and its caller
 * adds that once the GIL is back.  So a counter costs one increment, with
 * no lock and no atomic operation.
 *
 * A forked child starts from zero: the shim registers _reset_stats() with
 * os.register_at_fork(after_in_child=...), as a metrics system sees the
 * child as a new process.  (A fork made without os.fork(), from C, keeps
 * the parent's counts.) */
#include "stats.h"

#include <stddef.h>
#include <string.h>

/* The dict's keys, in its order. */
static const struct {
    const char *name;
    size_t offset;
} fields[] = {
    {"tokens_looked_up", offsetof(alkey_stats, tokens_looked_up)},
    {"tokens_found", offsetof(alkey_stats, tokens_found)},
    {"tokens_created", offsetof(alkey_stats, tokens_created)},
    {"tokens_fresh", offsetof(alkey_stats, tokens_fresh)},
    {"invalidations_sent", offsetof(alkey_stats, invalidations_sent)},
    {"invalidations_failed", offsetof(alkey_stats, invalidations_failed)},
    {"redis_round_trips", offsetof(alkey_stats, redis_round_trips)},
    {"redis_errors", offsetof(alkey_stats, redis_errors)},
    {"redis_timeouts", offsetof(alkey_stats, redis_timeouts)},
    {"redis_connections_opened",
     offsetof(alkey_stats, redis_connections_opened)},
};

/* Is type, or a class of its MRO, named TimeoutError?  By name, because
 * redis-py's redis.exceptions.TimeoutError is no subclass of the builtin
 * one and alkey does not import redis-py. */
static int
is_timeout(PyTypeObject *type)
{
    PyObject *mro = type->tp_mro;
    Py_ssize_t i, n;

    n = mro != NULL && PyTuple_Check(mro) ? PyTuple_GET_SIZE(mro) : 0;
    for (i = 0; i < n; i++) {
        const char *name = ((PyTypeObject *)PyTuple_GET_ITEM(mro, i))->tp_name;
        const char *dot = strrchr(name, '.');
        if (strcmp(dot != NULL ? dot + 1 : name, "TimeoutError") == 0) {
            return 1;
        }
    }
    return 0;
}

void
alkey_stats_count_failure(alkey_state *st, PyObject *exc_type)
{
    if (exc_type == NULL || !PyType_Check(exc_type) ||
        !PyErr_GivenExceptionMatches(exc_type, PyExc_Exception) ||
        PyErr_GivenExceptionMatches(exc_type, PyExc_MemoryError)) {
        return;
    }
    if (is_timeout((PyTypeObject *)exc_type)) {
        st->stats.redis_timeouts++;
    }
    else {
        st->stats.redis_errors++;
    }
}

const char alkey_stats_doc[] = PyDoc_STR(
"stats() -> dict[str, int]\n\n"
"The native counters since the process started (a forked child starts\n"
"from zero), for all clients together: tokens_looked_up, tokens_found,\n"
"tokens_created, tokens_fresh, invalidations_sent, invalidations_failed,\n"
"redis_round_trips, redis_errors, redis_timeouts,\n"
"redis_connections_opened.  A snapshot: the counts are read together.\n"
"alkey.stats() adds invalidations_pending and says what each one counts.");

PyObject *
alkey_py_stats(PyObject *module, PyObject *Py_UNUSED(unused))
{
    /* A copy first: building the dict may run a garbage collection, and
     * with it Python code that counts. */
    alkey_stats snapshot = alkey_get_state(module)->stats;
    PyObject *dict, *value;
    size_t i;

    dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        unsigned long long count;
        int rc;
        memcpy(&count, (const char *)&snapshot + fields[i].offset,
               sizeof(count));
        value = PyLong_FromUnsignedLongLong(count);
        if (value == NULL) {
            goto error;
        }
        rc = PyDict_SetItemString(dict, fields[i].name, value);
        Py_DECREF(value);
        if (rc < 0) {
            goto error;
        }
    }
    return dict;

error:
    Py_DECREF(dict);
    return NULL;
}

const char alkey_reset_stats_doc[] = PyDoc_STR(
"_reset_stats() -> None\n\n"
"Sets every counter of stats() back to zero.  The shim calls it in a\n"
"forked child (os.register_at_fork).");

PyObject *
alkey_py_reset_stats(PyObject *module, PyObject *Py_UNUSED(unused))
{
    memset(&alkey_get_state(module)->stats, 0, sizeof(alkey_stats));
    Py_RETURN_NONE;
}

const char alkey_count_invalidation_doc[] = PyDoc_STR(
"_count_invalidation(sent, failed, error) -> None\n\n"
"Counts one invalidation pipeline the shim sent through a redis-py\n"
"client: ``sent`` and ``failed`` identifiers, and ``error``, the\n"
"exception it raised (a Redis error or timeout), or None (a round trip).");

PyObject *
alkey_py_count_invalidation(PyObject *module, PyObject *const *args,
                            Py_ssize_t nargs)
{
    alkey_state *st = alkey_get_state(module);
    Py_ssize_t sent, failed;

    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "_count_invalidation() takes 3 arguments (sent, failed, "
                     "error), %zd given", nargs);
        return NULL;
    }
    sent = PyLong_AsSsize_t(args[0]);
    if (sent == -1 && PyErr_Occurred()) {
        return NULL;
    }
    failed = PyLong_AsSsize_t(args[1]);
    if (failed == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (sent < 0 || failed < 0) {
        PyErr_SetString(PyExc_ValueError,
                        "_count_invalidation() needs counts of 0 or more");
        return NULL;
    }
    if (args[2] == Py_None) {
        st->stats.redis_round_trips++;
    }
    else if (PyExceptionInstance_Check(args[2])) {
        alkey_stats_count_failure(st, (PyObject *)Py_TYPE(args[2]));
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "_count_invalidation() needs an exception or None");
        return NULL;
    }
    st->stats.invalidations_sent += (unsigned long long)sent;
    st->stats.invalidations_failed += (unsigned long long)failed;
    Py_RETURN_NONE;
}
