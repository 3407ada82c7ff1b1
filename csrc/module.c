/* alkey._native: the module definition, its state and its exceptions.
 * Each concern lives in its own file: client.c (the Redis client),
 * tokens.c (token lookup and cache_key), keys.c (key encoding),
 * changeset.c (the change set and token invalidation), stats.c (the
 * counters of alkey.stats()). */
#include "state.h"

#include <hiredis.h>

#include "changeset.h"
#include "client.h"
#include "keys.h"
#include "stats.h"
#include "tokens.h"

PyDoc_STRVAR(set_hooks_doc,
"_set_hooks(resolver, error_handler) -> None\n\n"
"Installs the shim's callables: resolver(obj) gives the identifier of an\n"
"object the key builder does not know (or None); error_handler(exc) is\n"
"told of each Redis failure that cache_key() recovered from.  Either may\n"
"be None.");

static PyObject *
set_hooks(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    alkey_state *st = alkey_get_state(module);
    Py_ssize_t i;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "_set_hooks() takes 2 arguments (resolver, "
                        "error_handler)");
        return NULL;
    }
    for (i = 0; i < 2; i++) {
        if (args[i] != Py_None && !PyCallable_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError,
                            "hooks must be callables or None");
            return NULL;
        }
    }
    Py_XSETREF(st->resolver, args[0] == Py_None ? NULL
                                                : (Py_INCREF(args[0]), args[0]));
    Py_XSETREF(st->error_handler, args[1] == Py_None
                                      ? NULL
                                      : (Py_INCREF(args[1]), args[1]));
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_pending_doc,
"_set_pending(identifiers) -> None\n\n"
"Installs the shim's set of identifiers whose invalidation has not\n"
"reached Redis yet (or None).  While it names an identifier, its table\n"
"epoch or the global epoch, cache_key() builds keys that name it from\n"
"fresh tokens: a miss, never a key the pending change should change.");

static PyObject *
set_pending(PyObject *module, PyObject *arg)
{
    alkey_state *st = alkey_get_state(module);

    if (arg != Py_None && !PySet_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "_set_pending() needs a set or None");
        return NULL;
    }
    Py_XSETREF(st->pending, arg == Py_None ? NULL
                                           : (Py_INCREF(arg), arg));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"_set_pending", set_pending, METH_O, set_pending_doc},
    {"cache_key", (PyCFunction)(void (*)(void))alkey_py_cache_key,
     METH_FASTCALL, alkey_cache_key_doc},
    {"fetch_tokens", (PyCFunction)(void (*)(void))alkey_py_fetch_tokens,
     METH_FASTCALL, alkey_fetch_tokens_doc},
    {"random_token", alkey_py_random_token, METH_NOARGS,
     alkey_random_token_doc},
    {"invalidate_tokens",
     (PyCFunction)(void (*)(void))alkey_py_invalidate_tokens, METH_FASTCALL,
     alkey_invalidate_tokens_doc},
    {"encode_key", (PyCFunction)(void (*)(void))alkey_py_encode_key,
     METH_FASTCALL, alkey_encode_key_doc},
    {"valid_object_id", alkey_py_valid_object_id, METH_O,
     alkey_valid_object_id_doc},
    {"valid_write_token", alkey_py_valid_write_token, METH_O,
     alkey_valid_write_token_doc},
    {"oid_kind", alkey_py_oid_kind, METH_O, alkey_oid_kind_doc},
    {"_set_hooks", (PyCFunction)(void (*)(void))set_hooks, METH_FASTCALL,
     set_hooks_doc},
    {"stats", alkey_py_stats, METH_NOARGS, alkey_stats_doc},
    {"_reset_stats", alkey_py_reset_stats, METH_NOARGS,
     alkey_reset_stats_doc},
    {"_count_invalidation",
     (PyCFunction)(void (*)(void))alkey_py_count_invalidation, METH_FASTCALL,
     alkey_count_invalidation_doc},
    {NULL, NULL, 0, NULL}
};

/* Creates exception name with the given bases (a new reference to a tuple
 * or a single class, stolen) and adds it to the module. */
static int
add_exception(PyObject *module, PyObject **slot, const char *name,
              const char *doc, PyObject *bases)
{
    char qualified[64];

    if (bases == NULL) {
        return -1;
    }
    snprintf(qualified, sizeof(qualified), "alkey.%s", name);
    *slot = PyErr_NewExceptionWithDoc(qualified, doc, bases, NULL);
    Py_DECREF(bases);
    if (*slot == NULL) {
        return -1;
    }
    Py_INCREF(*slot);
    if (PyModule_AddObject(module, name, *slot) < 0) {
        Py_DECREF(*slot);
        return -1;
    }
    return 0;
}

static PyObject *
new_ref(PyObject *o)
{
    Py_INCREF(o);
    return o;
}

static int
module_exec(PyObject *module)
{
    alkey_state *st = alkey_get_state(module);
    char version[32];

    if (add_exception(module, &st->Error, "Error",
                      "Base of every error alkey raises.",
                      new_ref(PyExc_Exception)) < 0 ||
        add_exception(module, &st->ConnectionError, "ConnectionError",
                      "Redis could not be reached, or the connection "
                      "failed.",
                      new_ref(st->Error)) < 0 ||
        add_exception(module, &st->TimeoutError, "TimeoutError",
                      "Redis did not answer within the timeout.",
                      new_ref(st->ConnectionError)) < 0 ||
        add_exception(module, &st->AuthenticationError,
                      "AuthenticationError",
                      "Redis refused the credentials.",
                      new_ref(st->ConnectionError)) < 0 ||
        add_exception(module, &st->ReplyError, "ReplyError",
                      "Redis answered with an error reply.",
                      new_ref(st->Error)) < 0 ||
        add_exception(module, &st->ConfigurationError, "ConfigurationError",
                      "A setting is malformed or cannot be honoured.",
                      PyTuple_Pack(2, st->Error, PyExc_ValueError)) < 0) {
        return -1;
    }
    st->ClientType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &alkey_client_spec, NULL);
    if (st->ClientType == NULL) {
        return -1;
    }
    if (PyModule_AddType(module, st->ClientType) < 0) {
        return -1;
    }
    st->ChangeSetType = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &alkey_changeset_spec, NULL);
    if (st->ChangeSetType == NULL) {
        return -1;
    }
    if (PyModule_AddType(module, st->ChangeSetType) < 0) {
        return -1;
    }
    snprintf(version, sizeof(version), "%d.%d.%d", HIREDIS_MAJOR,
             HIREDIS_MINOR, HIREDIS_PATCH);
    if (PyModule_AddStringConstant(module, "HIREDIS_VERSION", version) < 0) {
        return -1;
    }
#ifdef ALKEY_HAVE_HIREDIS_SSL
    if (PyModule_AddObject(module, "HAVE_TLS", new_ref(Py_True)) < 0) {
        Py_DECREF(Py_True);
        return -1;
    }
#else
    if (PyModule_AddObject(module, "HAVE_TLS", new_ref(Py_False)) < 0) {
        Py_DECREF(Py_False);
        return -1;
    }
#endif
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    alkey_state *st = alkey_get_state(module);

    Py_VISIT(st->Error);
    Py_VISIT(st->ConnectionError);
    Py_VISIT(st->TimeoutError);
    Py_VISIT(st->AuthenticationError);
    Py_VISIT(st->ReplyError);
    Py_VISIT(st->ConfigurationError);
    Py_VISIT(st->ClientType);
    Py_VISIT(st->ChangeSetType);
    Py_VISIT(st->resolver);
    Py_VISIT(st->error_handler);
    Py_VISIT(st->pending);
    return 0;
}

static int
module_clear(PyObject *module)
{
    alkey_state *st = alkey_get_state(module);

    Py_CLEAR(st->Error);
    Py_CLEAR(st->ConnectionError);
    Py_CLEAR(st->TimeoutError);
    Py_CLEAR(st->AuthenticationError);
    Py_CLEAR(st->ReplyError);
    Py_CLEAR(st->ConfigurationError);
    Py_CLEAR(st->ClientType);
    Py_CLEAR(st->ChangeSetType);
    Py_CLEAR(st->resolver);
    Py_CLEAR(st->error_handler);
    Py_CLEAR(st->pending);
    return 0;
}

static void
module_free(void *module)
{
    (void)module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL}
};

PyDoc_STRVAR(module_doc,
"alkey's native core: the Redis client over libhiredis, token lookup,\n"
"and cache key encoding and hashing.  Use it through the alkey package.");

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "alkey._native",
    .m_doc = module_doc,
    .m_size = sizeof(alkey_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModuleDef_Init(&native_module);
}
