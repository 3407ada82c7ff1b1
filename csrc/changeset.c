/* The change set of one session transaction, and the pipeline that
 * replaces the tokens of what it recorded.
 *
 * A ChangeSet is a journal (a list of the identifiers in the order they
 * were first added) and an index (a dict of the same identifiers, for
 * membership).  A savepoint's mark is the journal's length when it began;
 * rolling back to it cuts the journal back to that length and deletes the
 * identifiers cut from the index.  Adding an identifier already present
 * changes nothing, so one recorded before a savepoint began is never cut
 * by that savepoint's rollback.
 *
 * Both containers are private (oids() and iteration hand out copies) and
 * hold only exact str objects, so no Python code runs when an identifier
 * is hashed, compared or released, and no reference cycle can pass
 * through them: the type needs no tp_clear. */
#include "changeset.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "keys.h"
#include "tokens.h"

typedef struct {
    PyObject_HEAD
    PyObject *journal;          /* list of str, in insertion order */
    PyObject *index;            /* dict: the same str -> None */
} changeset;

/* ------------------------------------------------------------------ */
/* Identifiers                                                          */

/* The exception being raised, set aside while cleaning up after it
 * (PyErr_Fetch is deprecated from Python 3.12 on). */
typedef struct {
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc;
#else
    PyObject *type, *value, *tb;
#endif
} held_error;

static void
hold_error(held_error *e)
{
#if PY_VERSION_HEX >= 0x030C0000
    e->exc = PyErr_GetRaisedException();
#else
    PyErr_Fetch(&e->type, &e->value, &e->tb);
#endif
}

/* Raises the held exception again (its references are stolen). */
static void
restore_error(held_error *e)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(e->exc);
#else
    PyErr_Restore(e->type, e->value, e->tb);
#endif
}

static void
drop_error(held_error *e)
{
#if PY_VERSION_HEX >= 0x030C0000
    Py_XDECREF(e->exc);
#else
    Py_XDECREF(e->type);
    Py_XDECREF(e->value);
    Py_XDECREF(e->tb);
#endif
}

/* Checks that obj (borrowed) is a str naming an instance, a table or the
 * global token, and points *s at its UTF-8 text (owned by obj).  Returns
 * 0, or -1 with TypeError / ValueError set. */
static int
oid_text(PyObject *obj, const char **s, Py_ssize_t *n)
{
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError,
                     "an alkey identifier must be a str, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    *s = PyUnicode_AsUTF8AndSize(obj, n);
    if (*s == NULL) {
        /* Lone surrogates: not ASCII, so no identifier. */
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            return -1;
        }
        PyErr_Clear();
    }
    if (*s == NULL || alkey_oid_kind(*s, *n) == ALKEY_OID_NONE) {
        PyErr_Format(PyExc_ValueError,
                     "%.200R is not an alkey identifier such as "
                     "'alkey:users#1'", obj);
        return -1;
    }
    return 0;
}

/* The identifier obj (borrowed) as an exact str: obj itself, or a copy of
 * a str subclass, whose hash and equality could run Python code.  Returns
 * a new reference, or NULL with an exception set. */
static PyObject *
checked_oid(PyObject *obj)
{
    const char *s;
    Py_ssize_t n;

    if (oid_text(obj, &s, &n) < 0) {
        return NULL;
    }
    if (PyUnicode_CheckExact(obj)) {
        Py_INCREF(obj);
        return obj;
    }
    return PyUnicode_FromStringAndSize(s, n);
}

/* ------------------------------------------------------------------ */
/* The ChangeSet type                                                   */

/* Records obj (borrowed) unless it is already there.  Returns 0, or -1
 * with an exception set and the change set as it was. */
static int
changeset_add_one(changeset *self, PyObject *obj)
{
    PyObject *oid;
    held_error held;
    Py_ssize_t n;
    int found, rc = -1;

    oid = checked_oid(obj);
    if (oid == NULL) {
        return -1;
    }
    found = PyDict_Contains(self->index, oid);
    if (found != 0) {
        rc = found < 0 ? -1 : 0;
        goto done;
    }
    if (PyList_Append(self->journal, oid) < 0) {
        goto done;
    }
    if (PyDict_SetItem(self->index, oid, Py_None) < 0) {
        /* Keep the two in step: take back the entry just appended.
         * Shrinking a list by one item allocates nothing. */
        hold_error(&held);
        n = PyList_GET_SIZE(self->journal);
        (void)PyList_SetSlice(self->journal, n - 1, n, NULL);
        restore_error(&held);
        goto done;
    }
    rc = 0;
done:
    Py_DECREF(oid);
    return rc;
}

/* Forgets every identifier after the first mark (0 <= mark <= length).
 * Returns 0, or -1 (out of memory) with the change set as it was. */
static int
changeset_truncate(changeset *self, Py_ssize_t mark)
{
    PyObject *cut;
    Py_ssize_t i, n = PyList_GET_SIZE(self->journal);

    if (mark >= n) {
        return 0;
    }
    if (mark == 0) {
        /* Also gives the index's table back after a big transaction. */
        if (PyList_SetSlice(self->journal, 0, n, NULL) < 0) {
            return -1;
        }
        PyDict_Clear(self->index);
        return 0;
    }
    /* The journal is cut first: that can fail (it may allocate) but then
     * changes nothing; deleting exact str keys that are present cannot. */
    cut = PyList_GetSlice(self->journal, mark, n);
    if (cut == NULL) {
        return -1;
    }
    if (PyList_SetSlice(self->journal, mark, n, NULL) < 0) {
        Py_DECREF(cut);
        return -1;
    }
    for (i = 0; i < PyList_GET_SIZE(cut); i++) {
        if (PyDict_DelItem(self->index, PyList_GET_ITEM(cut, i)) < 0) {
            Py_DECREF(cut);
            return -1;
        }
    }
    Py_DECREF(cut);
    return 0;
}

static PyObject *
changeset_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    changeset *self;

    if (PyTuple_GET_SIZE(args) != 0 ||
        (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "ChangeSet() takes no arguments");
        return NULL;
    }
    self = (changeset *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->journal = PyList_New(0);
    self->index = PyDict_New();
    if (self->journal == NULL || self->index == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
changeset_traverse(PyObject *op, visitproc visit, void *arg)
{
    changeset *self = (changeset *)op;

    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->journal);
    Py_VISIT(self->index);
    return 0;
}

static void
changeset_dealloc(PyObject *op)
{
    changeset *self = (changeset *)op;
    PyTypeObject *tp = Py_TYPE(op);

    PyObject_GC_UnTrack(op);
    Py_CLEAR(self->journal);
    Py_CLEAR(self->index);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
changeset_repr(PyObject *op)
{
    Py_ssize_t n = PyList_GET_SIZE(((changeset *)op)->journal);

    return PyUnicode_FromFormat("<ChangeSet %zd identifier%s>", n,
                                n == 1 ? "" : "s");
}

static Py_ssize_t
changeset_length(PyObject *op)
{
    return PyList_GET_SIZE(((changeset *)op)->journal);
}

/* Anything but a str is not an identifier, so it is not in the set. */
static int
changeset_contains(PyObject *op, PyObject *key)
{
    if (!PyUnicode_Check(key)) {
        return 0;
    }
    return PyDict_Contains(((changeset *)op)->index, key);
}

/* Iterates over a snapshot: changing the set meanwhile is allowed and does
 * not show. */
static PyObject *
changeset_iter(PyObject *op)
{
    PyObject *copy, *it;

    copy = PyList_GetSlice(((changeset *)op)->journal, 0, PY_SSIZE_T_MAX);
    if (copy == NULL) {
        return NULL;
    }
    it = PyObject_GetIter(copy);
    Py_DECREF(copy);
    return it;
}

PyDoc_STRVAR(changeset_add_doc,
"add($self, oid, /)\n--\n\n"
"Records the identifier ``oid`` (a str such as 'alkey:users#1',\n"
"'alkey:users#*' or 'alkey:*#*') unless it is already recorded, in which\n"
"case it keeps its first position.  TypeError for a non-str, ValueError\n"
"for a str that is not an identifier.");

static PyObject *
changeset_add(PyObject *op, PyObject *oid)
{
    if (changeset_add_one((changeset *)op, oid) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(changeset_update_doc,
"update($self, oids, /)\n--\n\n"
"Records each identifier of the iterable ``oids``, as add() does.  All or\n"
"nothing: when an item is refused (or the iterable raises), the\n"
"identifiers this call had recorded are forgotten again and the change\n"
"set is as before the call.  A str is refused as a whole (use add()).");

static PyObject *
changeset_update(PyObject *op, PyObject *iterable)
{
    changeset *self = (changeset *)op;
    PyObject *it, *item;
    held_error held;
    Py_ssize_t mark = PyList_GET_SIZE(self->journal);

    if (PyUnicode_Check(iterable)) {
        PyErr_SetString(PyExc_TypeError,
                        "update() takes an iterable of identifiers, not a "
                        "str; use add() for one identifier");
        return NULL;
    }
    it = PyObject_GetIter(iterable);
    if (it == NULL) {
        return NULL;
    }
    while ((item = PyIter_Next(it)) != NULL) {
        int rc = changeset_add_one(self, item);
        Py_DECREF(item);
        if (rc < 0) {
            goto error;
        }
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    Py_DECREF(it);
    Py_RETURN_NONE;

error:
    Py_DECREF(it);
    /* Only what this call appended lies beyond mark (unless the iterable
     * itself cut the set shorter meanwhile: then there is less to undo). */
    hold_error(&held);
    if (changeset_truncate(self, mark) < 0) {
        drop_error(&held);
        return NULL;
    }
    restore_error(&held);
    return NULL;
}

PyDoc_STRVAR(changeset_mark_doc,
"mark($self, /)\n--\n\n"
"The number of identifiers recorded: a savepoint's mark, for\n"
"rollback_to().  Releasing the savepoint needs nothing: forget the mark.");

static PyObject *
changeset_mark(PyObject *op, PyObject *Py_UNUSED(unused))
{
    return PyLong_FromSsize_t(PyList_GET_SIZE(((changeset *)op)->journal));
}

PyDoc_STRVAR(changeset_rollback_to_doc,
"rollback_to($self, mark, /)\n--\n\n"
"Forgets every identifier recorded after ``mark`` (a value of mark()):\n"
"the savepoint that took it was rolled back.  ValueError when ``mark``\n"
"is below 0 or above the number recorded.");

static PyObject *
changeset_rollback_to(PyObject *op, PyObject *arg)
{
    changeset *self = (changeset *)op;
    Py_ssize_t mark, n = PyList_GET_SIZE(self->journal);

    if (PyBool_Check(arg) || !PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "a mark must be an int, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    mark = PyLong_AsSsize_t(arg);
    if (mark == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return NULL;
        }
        PyErr_Clear();
    }
    if (mark < 0 || mark > n) {
        PyErr_Format(PyExc_ValueError,
                     "mark %.50R is out of range: the change set holds %zd "
                     "identifiers", arg, n);
        return NULL;
    }
    if (changeset_truncate(self, mark) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(changeset_clear_doc,
"clear($self, /)\n--\n\n"
"Forgets every identifier (the transaction ended).");

static PyObject *
changeset_clear(PyObject *op, PyObject *Py_UNUSED(unused))
{
    if (changeset_truncate((changeset *)op, 0) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(changeset_oids_doc,
"oids($self, /)\n--\n\n"
"A new list of the identifiers, in the order they were first recorded.");

static PyObject *
changeset_oids(PyObject *op, PyObject *Py_UNUSED(unused))
{
    return PyList_GetSlice(((changeset *)op)->journal, 0, PY_SSIZE_T_MAX);
}

static PyMethodDef changeset_methods[] = {
    {"add", changeset_add, METH_O, changeset_add_doc},
    {"update", changeset_update, METH_O, changeset_update_doc},
    {"mark", changeset_mark, METH_NOARGS, changeset_mark_doc},
    {"rollback_to", changeset_rollback_to, METH_O,
     changeset_rollback_to_doc},
    {"clear", changeset_clear, METH_NOARGS, changeset_clear_doc},
    {"oids", changeset_oids, METH_NOARGS, changeset_oids_doc},
    {NULL, NULL, 0, NULL}
};

PyDoc_STRVAR(changeset_doc,
"ChangeSet()\n--\n\n"
"The identifiers changed in one session transaction, in the order they\n"
"were first recorded, each once.  A savepoint takes mark() when it\n"
"begins and calls rollback_to(mark) when it is rolled back; a released\n"
"savepoint keeps what it recorded.  len(), ``in`` and iteration (over a\n"
"snapshot) work as on a list.");

static PyType_Slot changeset_slots[] = {
    {Py_tp_doc, (void *)changeset_doc},
    {Py_tp_new, changeset_new},
    {Py_tp_dealloc, changeset_dealloc},
    {Py_tp_traverse, changeset_traverse},
    {Py_tp_repr, changeset_repr},
    {Py_tp_iter, changeset_iter},
    {Py_tp_methods, changeset_methods},
    {Py_sq_length, changeset_length},
    {Py_sq_contains, changeset_contains},
    {0, NULL}
};

PyType_Spec alkey_changeset_spec = {
    .name = "alkey._native.ChangeSet",
    .basicsize = sizeof(changeset),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = changeset_slots,
};

/* ------------------------------------------------------------------ */
/* Invalidation                                                         */

/* The extra commands of invalidate_tokens: a new tuple of tuples, each
 * holding only str and bytes (so that their text stays put while it is
 * sent); *nargs is the total of their arguments. */
static PyObject *
extra_commands(PyObject *obj, Py_ssize_t *nargs)
{
    PyObject *given = PySequence_Tuple(obj), *outer = NULL;
    Py_ssize_t i, j, total = 0;

    if (given == NULL) {
        return NULL;
    }
    /* A tuple of our own: the caller's (maybe shared) tuple stays as is. */
    outer = PyTuple_New(PyTuple_GET_SIZE(given));
    if (outer == NULL) {
        goto fail;
    }
    for (i = 0; i < PyTuple_GET_SIZE(given); i++) {
        PyObject *item = PyTuple_GET_ITEM(given, i), *cmd;
        if (PyUnicode_Check(item) || PyBytes_Check(item) ||
            PyByteArray_Check(item)) {
            /* ('ZREM', key, member) given where [(...)] was meant would
             * otherwise be split into one-letter commands. */
            PyErr_Format(PyExc_TypeError,
                         "invalidate_tokens: each extra command must be a "
                         "sequence of arguments, not %.100s",
                         Py_TYPE(item)->tp_name);
            goto fail;
        }
        cmd = PySequence_Tuple(item);
        if (cmd == NULL) {
            goto fail;
        }
        PyTuple_SET_ITEM(outer, i, cmd);
        if (PyTuple_GET_SIZE(cmd) == 0) {
            PyErr_SetString(PyExc_ValueError,
                            "invalidate_tokens: an extra command is empty");
            goto fail;
        }
        if (PyTuple_GET_SIZE(cmd) > INT_MAX / 2) {
            PyErr_SetString(PyExc_OverflowError,
                            "invalidate_tokens: an extra command is too long");
            goto fail;
        }
        for (j = 0; j < PyTuple_GET_SIZE(cmd); j++) {
            PyObject *arg = PyTuple_GET_ITEM(cmd, j);
            if (!PyUnicode_Check(arg) && !PyBytes_Check(arg)) {
                PyErr_Format(PyExc_TypeError,
                             "invalidate_tokens: extra command arguments "
                             "must be str or bytes, not %.100s",
                             Py_TYPE(arg)->tp_name);
                goto fail;
            }
        }
        if (PyTuple_GET_SIZE(cmd) > PY_SSIZE_T_MAX / 8 - total) {
            PyErr_NoMemory();
            goto fail;
        }
        total += PyTuple_GET_SIZE(cmd);
    }
    Py_DECREF(given);
    *nargs = total;
    return outer;

fail:
    Py_XDECREF(outer);
    Py_DECREF(given);
    return NULL;
}

/* Points cmds[] at the text of extra_commands()'s tuples, whose argument
 * slots argv[] and argvlen[] have room for all of them. */
static int
extra_fill(PyObject *extra, alkey_cmd *cmds, const char **argv,
           size_t *argvlen)
{
    Py_ssize_t i, j, off = 0;

    for (i = 0; i < PyTuple_GET_SIZE(extra); i++) {
        PyObject *cmd = PyTuple_GET_ITEM(extra, i);
        cmds[i].argc = (int)PyTuple_GET_SIZE(cmd);
        cmds[i].argv = argv + off;
        cmds[i].argvlen = argvlen + off;
        for (j = 0; j < PyTuple_GET_SIZE(cmd); j++, off++) {
            PyObject *arg = PyTuple_GET_ITEM(cmd, j);
            Py_ssize_t len;
            const char *text;
            if (PyUnicode_Check(arg)) {
                text = PyUnicode_AsUTF8AndSize(arg, &len);
                if (text == NULL) {
                    return -1;
                }
            }
            else {
                text = PyBytes_AS_STRING(arg);
                len = PyBytes_GET_SIZE(arg);
            }
            argv[off] = text;
            argvlen[off] = (size_t)len;
        }
    }
    return 0;
}

const char alkey_invalidate_tokens_doc[] = PyDoc_STR(
"invalidate_tokens($module, client, oids, namespace, ttl, extra=None, /)\n"
"--\n\n"
"Replaces the token of each identifier of ``oids`` (a sequence or other\n"
"iterable of str; a ChangeSet will do) with a new random one:\n"
"``SET <namespace>:<oid> <token> EX <ttl>`` each, all in one pipeline\n"
"(one round trip, the GIL released around the I/O).  Returns the number\n"
"of tokens replaced; an empty ``oids`` sends nothing and returns 0.\n"
"``client`` must be an alkey Client (the shim sends through redis-py\n"
"itself).  Raises ValueError for an item that is not an identifier\n"
"(before anything is sent), alkey.ConnectionError (or a subclass) when\n"
"Redis fails, and alkey.ReplyError when Redis refuses a SET (the other\n"
"SETs may have been applied).\n\n"
"``extra``, a sequence of commands (each a sequence of str or bytes),\n"
"goes in the same round trip after the SETs, all of them in one\n"
"MULTI/EXEC transaction: when Redis refuses a SET (out of memory, an ACL)\n"
"nothing is applied, so an extra command never runs without the SETs\n"
"(write-ahead intents use it to drop the intent of the commit being\n"
"delivered; the ACL user then needs MULTI and EXEC too).  Only an error\n"
"reply to an extra command counts as its failure.  An empty ``oids``\n"
"sends nothing, ``extra`` included.");

/* Builds every command with the GIL held: the key texts, the tokens and
 * the ttl are copied into C buffers, so that nothing the connection reads
 * while the GIL is released belongs to a Python object. */
PyObject *
alkey_py_invalidate_tokens(PyObject *module, PyObject *const *args,
                           Py_ssize_t nargs)
{
    alkey_state *st = alkey_get_state(module);
    alkey_client *client;
    alkey_conn *conn;
    PyObject *seq = NULL, *extra = NULL, *result = NULL;
    const char *ns, **oids = NULL, **argv = NULL;
    Py_ssize_t nslen, *oidlens = NULL, i, n = 0, m = 0, nextra_args = 0;
    Py_ssize_t failed = 0, set_failed = 0, first_bad = -1, t = 0, ncmds = 0;
    alkey_cmd *sets;
    static const char *multi_argv[] = {"MULTI"}, *exec_argv[] = {"EXEC"};
    static const size_t multi_len[] = {5}, exec_len[] = {4};
    size_t *argvlen = NULL, total = 0, off = 0, ttllen;
    char *keybuf = NULL, *tokbuf = NULL, ttlbuf[32], detail[256];
    alkey_cmd *cmds = NULL;
    redisReply **replies = NULL;
    long ttl;
    int rc, err_no = 0;

    if (nargs != 4 && nargs != 5) {
        PyErr_Format(PyExc_TypeError,
                     "invalidate_tokens() takes 4 or 5 arguments (client, "
                     "oids, namespace, ttl, extra=None), %zd given", nargs);
        return NULL;
    }
    if (!PyObject_TypeCheck(args[0], st->ClientType)) {
        PyErr_Format(PyExc_TypeError,
                     "invalidate_tokens() needs an alkey Client, not %.100s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    client = (alkey_client *)args[0];
    if (!PyUnicode_Check(args[2])) {
        PyErr_Format(PyExc_TypeError, "namespace must be a str, not %.100s",
                     Py_TYPE(args[2])->tp_name);
        return NULL;
    }
    if (alkey_ttl_arg(args[3], &ttl) < 0) {
        return NULL;
    }
    ttllen = (size_t)snprintf(ttlbuf, sizeof(ttlbuf), "%ld", ttl);
    /* A tuple of our own keeps every item, and so the UTF-8 text oids[]
     * points to, alive whatever Python code does to the caller's list. */
    seq = PySequence_Tuple(args[1]);
    if (seq == NULL) {
        return NULL;
    }
    ns = PyUnicode_AsUTF8AndSize(args[2], &nslen);
    if (ns == NULL) {
        goto done;
    }
    if (nargs == 5 && args[4] != Py_None) {
        extra = extra_commands(args[4], &nextra_args);
        if (extra == NULL) {
            goto done;
        }
        m = PyTuple_GET_SIZE(extra);
    }
    n = PyTuple_GET_SIZE(seq);
    if (n == 0) {
        result = PyLong_FromLong(0);
        goto done;
    }
    if (n > INT_MAX / 5 - m || nextra_args > INT_MAX / 5 ||
        (size_t)n > SIZE_MAX / ALKEY_TOKEN_LEN) {
        PyErr_SetString(PyExc_OverflowError,
                        "too many identifiers for one pipeline");
        goto done;
    }
    oids = PyMem_New(const char *, n);
    oidlens = PyMem_New(Py_ssize_t, n);
    if (oids == NULL || oidlens == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < n; i++) {
        size_t one;
        if (oid_text(PyTuple_GET_ITEM(seq, i), &oids[i],
                     &oidlens[i]) < 0) {
            goto done;
        }
        /* "<namespace>:<oid>" and a NUL, for error messages. */
        one = (size_t)nslen + (size_t)oidlens[i] + 2;
        if (one > SIZE_MAX - total) {
            PyErr_NoMemory();
            goto done;
        }
        total += one;
    }
    keybuf = PyMem_Malloc(total);
    tokbuf = PyMem_Malloc((size_t)n * ALKEY_TOKEN_LEN);
    argv = PyMem_New(const char *, 5 * n + nextra_args);
    argvlen = PyMem_New(size_t, 5 * n + nextra_args);
    /* With extra commands: MULTI, the SETs, the extras, EXEC. */
    t = m > 0 ? 1 : 0;
    ncmds = n + m + 2 * t;
    cmds = PyMem_New(alkey_cmd, ncmds);
    replies = PyMem_Calloc((size_t)ncmds, sizeof(redisReply *));
    if (keybuf == NULL || tokbuf == NULL || argv == NULL ||
        argvlen == NULL || cmds == NULL || replies == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    sets = cmds + t;
    for (i = 0; i < n; i++) {
        const char **av = argv + 5 * i;
        size_t *al = argvlen + 5 * i;
        char *key = keybuf + off, *tok = tokbuf + i * ALKEY_TOKEN_LEN;

        memcpy(keybuf + off, ns, (size_t)nslen);
        off += (size_t)nslen;
        keybuf[off++] = ':';
        memcpy(keybuf + off, oids[i], (size_t)oidlens[i]);
        off += (size_t)oidlens[i];
        keybuf[off++] = '\0';
        if (alkey_random_token(tok) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
        av[0] = "SET"; al[0] = 3;
        av[1] = key; al[1] = (size_t)nslen + 1 + (size_t)oidlens[i];
        av[2] = tok; al[2] = ALKEY_TOKEN_LEN;
        av[3] = "EX"; al[3] = 2;
        av[4] = ttlbuf; al[4] = ttllen;
        sets[i].argc = 5;
        sets[i].argv = av;
        sets[i].argvlen = al;
    }
    if (m > 0) {
        if (extra_fill(extra, sets + n, argv + 5 * n, argvlen + 5 * n) < 0) {
            goto done;
        }
        cmds[0].argc = 1;
        cmds[0].argv = multi_argv;
        cmds[0].argvlen = multi_len;
        cmds[ncmds - 1].argc = 1;
        cmds[ncmds - 1].argv = exec_argv;
        cmds[ncmds - 1].argvlen = exec_len;
    }

    conn = alkey_client_acquire(client, st);
    if (conn == NULL) {
        st->stats.invalidations_failed += (unsigned long long)n;
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = alkey_conn_run(conn, (int)ncmds, cmds, replies, &err_no);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        /* No reply is left; the pipeline may be half sent. */
        alkey_conn_error(st, client, conn->ctx, err_no);
        alkey_client_release(client, conn, 1);
        st->stats.invalidations_failed += (unsigned long long)n;
        goto done;
    }
    /* Every reply was read: the connection is reusable whatever they say. */
    alkey_client_release(client, conn, 0);
    st->stats.redis_round_trips++;

    if (t && !(replies[ncmds - 1]->type == REDIS_REPLY_ARRAY &&
               replies[ncmds - 1]->elements == (size_t)(n + m))) {
        /* EXEC refused (EXECABORT: a command was refused when queued):
         * nothing was applied.  The first refusal says why. */
        const redisReply *why = replies[ncmds - 1];
        for (i = 1; i < ncmds - 1; i++) {
            if (replies[i]->type == REDIS_REPLY_ERROR) {
                why = replies[i];
                break;
            }
        }
        st->stats.invalidations_failed += (unsigned long long)n;
        st->stats.redis_errors++;
        PyErr_Format(st->ReplyError,
                     "invalidate_tokens: Redis refused the transaction of "
                     "%zd SET and %zd other commands, nothing was applied: "
                     "%.200s", n, m,
                     why->type == REDIS_REPLY_ERROR && why->str ? why->str
                     : "unexpected reply to EXEC");
        goto done;
    }
    for (i = 0; i < n + m; i++) {
        const redisReply *r = t ? replies[ncmds - 1]->element[i] : replies[i];
        if (r->type == REDIS_REPLY_STATUS ||
            (i >= n && r->type != REDIS_REPLY_ERROR)) {
            continue;
        }
        if (i < n) {
            set_failed++;
        }
        if (failed++ == 0) {
            first_bad = i;
            if (r->type == REDIS_REPLY_ERROR) {
                snprintf(detail, sizeof(detail), "%.200s",
                         r->str ? r->str : "");
            }
            else {
                snprintf(detail, sizeof(detail),
                         "unexpected reply (type %d)", r->type);
            }
        }
    }
    st->stats.invalidations_sent += (unsigned long long)(n - set_failed);
    st->stats.invalidations_failed += (unsigned long long)set_failed;
    if (failed && first_bad >= n) {
        st->stats.redis_errors++;
        PyErr_Format(st->ReplyError,
                     "invalidate_tokens: extra command %zd (%.40s) failed: "
                     "%s (the %zd SET commands were applied)",
                     first_bad - n, sets[first_bad].argv[0], detail, n);
        goto done;
    }
    if (failed) {
        /* The key of the first failure, NUL-terminated in keybuf. */
        const char *key = argv[5 * first_bad + 1];
        st->stats.redis_errors++;
        PyErr_Format(st->ReplyError,
                     "invalidate_tokens: SET %s failed: %s (%zd of %zd "
                     "commands failed)", key, detail, failed, n + m);
        goto done;
    }
    result = PyLong_FromSsize_t(n);

done:
    if (replies != NULL) {
        for (i = 0; i < ncmds; i++) {
            if (replies[i] != NULL) {
                freeReplyObject(replies[i]);
            }
        }
    }
    PyMem_Free(replies);
    PyMem_Free(cmds);
    PyMem_Free(argvlen);
    PyMem_Free(argv);
    PyMem_Free(tokbuf);
    PyMem_Free(keybuf);
    PyMem_Free(oidlens);
    PyMem_Free(oids);
    Py_XDECREF(extra);
    Py_DECREF(seq);
    return result;
}
