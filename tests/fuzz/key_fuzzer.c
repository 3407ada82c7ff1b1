/* libFuzzer target: the key plan of csrc/keys.c (alkey_keyplan_init,
 * alkey_keyplan_add_args, alkey_keyplan_finish) on arguments built from
 * the input, in an embedded interpreter.
 *
 * Input: one byte that says where to split the arguments between two
 * add_args calls, then values until the input ends (at most MAX_ARGS).
 * A value is an opcode byte (mod 16) and its operands; reading past the
 * end gives 0 bytes.  tests/fuzz/fuzzcheck.py decodes the same bytecode
 * for the corpus replay: keep the two in step.
 *
 *    0 str    len byte, UTF-8 bytes decoded with surrogateescape
 *    1 str    len byte, UTF-8 with surrogatepass, else latin-1
 *    2 str    "alkey:" + len byte, latin-1 bytes (identifier-shaped)
 *    3 str    count byte % 16, code points of 3 bytes LE % 0x110000
 *    4 bytes  len byte, bytes      5 bytearray  the same
 *    6 int    len byte % 33, little-endian signed bytes
 *    7 float  8 bytes little-endian IEEE double (zero-padded)
 *    8 None   9 True   10 False
 *   11 tuple  12 list   count byte % 8, values (no count byte and empty
 *                       at MAX_DEPTH)
 *   13 dict   count pairs (key, value); an unhashable key is skipped
 *   14 set    15 frozenset: count values; unhashable ones skipped
 *
 * Checks: the plan built in two add_args calls is the plan built in one
 * (and a failing call leaves the plan as it was); a ValueError comes out
 * exactly when containers nest deeper than ALKEY_KEY_MAX_NESTING, and
 * nothing else may but MemoryError; the readable
 * key has one "/" per argument boundary and each segment has the shape
 * the spec gives its argument; the hashed key is the SHA-256 of the
 * readable one; finishing twice gives the same key; no reference count of
 * any argument object changes.  The interpreter uses malloc for
 * everything, so that ASan sees every buffer and LSan every leaked
 * object. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "keys.h"

#ifndef ALKEY_FUZZ_PYTHON_HOME
#error "build with -DALKEY_FUZZ_PYTHON_HOME='\"sys.base_prefix\"'"
#endif

/* Containers deeper than MAX_DEPTH decode empty: a few levels past the
 * encoder's ALKEY_KEY_MAX_NESTING, so that its refusal is reached.  The
 * interpreter's recursion limit stays above both, so that the encoder's
 * own limit, not a RecursionError, is what deep inputs meet. */
#define MAX_DEPTH 72
#define RECURSION_LIMIT (MAX_DEPTH + 64)
#define MAX_ARGS 64

static alkey_state state;   /* zeroed: no resolver */


/* ---- failing ----------------------------------------------------------- */

static const uint8_t *cur_data;
static size_t cur_size;

static void
fail(const char *fmt, ...)
{
    va_list ap;
    size_t i;

    va_start(ap, fmt);
    fprintf(stderr, "key_fuzzer: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ninput (%zu bytes):", cur_size);
    for (i = 0; i < cur_size && i < 256; i++) {
        fprintf(stderr, " %02x", cur_data[i]);
    }
    fprintf(stderr, "\n");
    if (PyErr_Occurred()) {
        PyErr_Print();
    }
    abort();
}


/* ---- the bytecode ------------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    size_t n, i;
} reader;

static unsigned
next_byte(reader *r)
{
    return r->i < r->n ? r->p[r->i++] : 0;
}

/* Up to want bytes (fewer at the end); *out points into the input. */
static size_t
take(reader *r, size_t want, const uint8_t **out)
{
    size_t avail = r->n - r->i;

    if (want > avail) {
        want = avail;
    }
    *out = r->p + r->i;
    r->i += want;
    return want;
}

static PyObject *decode(reader *r, int depth);

/* Adds item (stolen) to the set or dict c; an unhashable key is dropped,
 * as fuzzcheck.py does. */
static void
add_member(PyObject *c, PyObject *key, PyObject *value)
{
    int rc = value != NULL ? PyDict_SetItem(c, key, value)
                           : PySet_Add(c, key);

    if (rc < 0) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) {
            fail("adding to a %s failed", Py_TYPE(c)->tp_name);
        }
        PyErr_Clear();
    }
    Py_DECREF(key);
    Py_XDECREF(value);
}

static PyObject *
decode_container(reader *r, int op, int depth)
{
    unsigned count = depth >= MAX_DEPTH ? 0 : next_byte(r) % 8, j;
    PyObject *c;

    switch (op) {
    case 11: c = PyTuple_New(count); break;
    case 12: c = PyList_New(count); break;
    case 13: c = PyDict_New(); break;
    case 14: c = PySet_New(NULL); break;
    default: c = PyFrozenSet_New(NULL); break;
    }
    if (c == NULL) {
        fail("cannot make a container");
    }
    for (j = 0; j < count; j++) {
        PyObject *item = decode(r, depth + 1);

        if (op == 11) {
            PyTuple_SET_ITEM(c, j, item);
        }
        else if (op == 12) {
            PyList_SET_ITEM(c, j, item);
        }
        else if (op == 13) {
            add_member(c, item, decode(r, depth + 1));
        }
        else {
            add_member(c, item, NULL);
        }
    }
    return c;
}

/* A new reference; never NULL (a failure here is the harness's). */
static PyObject *
decode(reader *r, int depth)
{
    unsigned op = next_byte(r) % 16;
    const uint8_t *d;
    size_t n;
    PyObject *o = NULL;

    switch (op) {
    case 0:
        n = take(r, next_byte(r), &d);
        o = PyUnicode_DecodeUTF8((const char *)d, (Py_ssize_t)n,
                                 "surrogateescape");
        break;
    case 1:
        n = take(r, next_byte(r), &d);
        o = PyUnicode_DecodeUTF8((const char *)d, (Py_ssize_t)n,
                                 "surrogatepass");
        if (o == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            o = PyUnicode_DecodeLatin1((const char *)d, (Py_ssize_t)n, NULL);
        }
        break;
    case 2: {
        char buf[6 + 255];

        n = take(r, next_byte(r), &d);
        memcpy(buf, "alkey:", 6);
        memcpy(buf + 6, d, n);
        o = PyUnicode_DecodeLatin1(buf, (Py_ssize_t)(6 + n), NULL);
        break;
    }
    case 3: {
        Py_UCS4 cps[16];
        unsigned count = next_byte(r) % 16, j;

        for (j = 0; j < count; j++) {
            unsigned b0 = next_byte(r), b1 = next_byte(r), b2 = next_byte(r);

            cps[j] = (Py_UCS4)((b0 | b1 << 8 | b2 << 16) % 0x110000);
        }
        o = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, cps, count);
        break;
    }
    case 4:
        n = take(r, next_byte(r), &d);
        o = PyBytes_FromStringAndSize((const char *)d, (Py_ssize_t)n);
        break;
    case 5:
        n = take(r, next_byte(r), &d);
        o = PyByteArray_FromStringAndSize((const char *)d, (Py_ssize_t)n);
        break;
    case 6:
        n = take(r, next_byte(r) % 33, &d);
        o = _PyLong_FromByteArray(d, n, 1, 1);
        break;
    case 7: {
        uint8_t raw[8] = {0};
        uint64_t bits = 0;
        double v;
        int j;

        n = take(r, 8, &d);
        memcpy(raw, d, n);
        for (j = 7; j >= 0; j--) {
            bits = bits << 8 | raw[j];
        }
        memcpy(&v, &bits, sizeof(v));
        o = PyFloat_FromDouble(v);
        break;
    }
    case 8: o = Py_NewRef(Py_None); break;
    case 9: o = Py_NewRef(Py_True); break;
    case 10: o = Py_NewRef(Py_False); break;
    default:
        o = decode_container(r, (int)op, depth);
        break;
    }
    if (o == NULL) {
        fail("cannot decode opcode %u", op);
    }
    return o;
}


/* ---- reference counts of every argument object -------------------------- */

typedef struct {
    PyObject **objs;
    Py_ssize_t *refs;
    size_t n, cap;
} refsnap;

static void
snap_add(refsnap *s, PyObject *o)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->objs = realloc(s->objs, s->cap * sizeof(*s->objs));
        s->refs = realloc(s->refs, s->cap * sizeof(*s->refs));
        if (s->objs == NULL || s->refs == NULL) {
            fail("out of memory");
        }
    }
    s->objs[s->n] = o;
    s->refs[s->n] = Py_REFCNT(o);
    s->n++;
}

/* Borrows o; adds no reference while it walks. */
static void
snap_walk(refsnap *s, PyObject *o)
{
    Py_ssize_t i;

    snap_add(s, o);
    if (PyTuple_Check(o) || PyList_Check(o)) {
        for (i = 0; i < PySequence_Fast_GET_SIZE(o); i++) {
            snap_walk(s, PySequence_Fast_GET_ITEM(o, i));
        }
    }
    else if (PyDict_Check(o)) {
        PyObject *k, *v;

        i = 0;
        while (PyDict_Next(o, &i, &k, &v)) {
            snap_walk(s, k);
            snap_walk(s, v);
        }
    }
    else if (PyAnySet_Check(o)) {
        PyObject *k;
        Py_hash_t h;

        i = 0;
        while (_PySet_NextEntry(o, &i, &k, &h)) {
            snap_walk(s, k);
        }
    }
}

static void
snap_compare(const refsnap *before, const refsnap *after)
{
    size_t i;

    if (before->n != after->n) {
        fail("the arguments changed shape (%zu objects, then %zu)",
             before->n, after->n);
    }
    for (i = 0; i < before->n; i++) {
        if (before->objs[i] != after->objs[i]
            || before->refs[i] != after->refs[i]) {
            fail("reference count of a %s went from %zd to %zd",
                 Py_TYPE(after->objs[i])->tp_name, before->refs[i],
                 after->refs[i]);
        }
    }
}

static void
snap_free(refsnap *s)
{
    free(s->objs);
    free(s->refs);
    memset(s, 0, sizeof(*s));
}


/* ---- tokens and the expected key ---------------------------------------- */

/* fuzzcheck.token_for_slot(): bytes the key escapes, and empty ones. */
static size_t
token_for_slot(size_t i, char *buf, size_t cap)
{
    int n;

    if (i % 4 == 3) {
        buf[0] = '\0';
        return 0;
    }
    n = snprintf(buf, cap, "T%zu/~%%.\xc3\xa9", i);
    if (n < 0 || (size_t)n >= cap) {
        fail("token too long");
    }
    return (size_t)n;
}

/* Appends esc(s) (spec: "%", "/", "~" as %XX) to out at *len. */
static void
put_esc(char *out, size_t *len, const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '%' || c == '/' || c == '~') {
            *len += (size_t)sprintf(out + *len, "%%%02X", c);
        }
        else {
            out[(*len)++] = (char)c;
        }
    }
}

/* The tag letter a non-text, non-identifier argument's segment starts
 * with after "~", or 0 for a str. */
static char
expected_tag(PyObject *o)
{
    if (PyUnicode_Check(o)) {
        return 0;
    }
    if (PyBool_Check(o)) {
        return o == Py_True ? 'T' : 'F';
    }
    if (PyLong_Check(o)) {
        return 'i';
    }
    if (PyFloat_Check(o)) {
        return 'f';
    }
    if (o == Py_None) {
        return 'N';
    }
    if (PyBytes_Check(o) || PyByteArray_Check(o)) {
        return 'b';
    }
    if (PyTuple_Check(o)) {
        return 't';
    }
    if (PyList_Check(o)) {
        return 'l';
    }
    if (PyDict_Check(o)) {
        return 'd';
    }
    return 's';
}

/* The segment of one top-level argument in the readable key; tokens[i]
 * is slot i's token as the key must show it. */
static void
check_segment(PyObject *arg, const char *seg, size_t n, size_t *slot,
              size_t nslots, const char *const *tokens, const size_t *lens)
{
    char tag = expected_tag(arg);
    const char *s;
    Py_ssize_t len;

    if (tag != 0) {
        if (n < 2 || seg[0] != '~' || seg[1] != tag) {
            fail("a %s argument has the segment %.*s", Py_TYPE(arg)->tp_name,
                 (int)n, seg);
        }
        return;
    }
    s = PyUnicode_AsUTF8AndSize(arg, &len);
    if (s == NULL) {
        PyErr_Clear();
        if (n < 2 || memcmp(seg, "~x", 2) != 0) {
            fail("a str with surrogates has the segment %.*s", (int)n, seg);
        }
        return;
    }
    if (len == 0) {
        if (n != 2 || memcmp(seg, "~E", 2) != 0) {
            fail("the empty str has the segment %.*s", (int)n, seg);
        }
        return;
    }
    {
        /* esc() at most triples a byte; tokens are under 32 bytes. */
        char *want = malloc(3 * (size_t)len + 1 + 3 * 32);
        size_t wlen = 0;

        if (want == NULL) {
            fail("out of memory");
        }
        if (alkey_oid_kind(s, len) != ALKEY_OID_NONE) {
            /* <oid> "~" <token> */
            if (*slot >= nslots) {
                fail("the identifier %s has no slot", s);
            }
            memcpy(want, s, (size_t)len);
            wlen = (size_t)len;
            want[wlen++] = '~';
            memcpy(want + wlen, tokens[*slot], lens[*slot]);
            wlen += lens[*slot];
            (*slot)++;
        }
        else {
            put_esc(want, &wlen, s, (size_t)len);
        }
        if (wlen != n || memcmp(want, seg, n) != 0) {
            fail("the str %s has the segment %.*s, not %.*s", s, (int)n, seg,
                 (int)wlen, want);
        }
        free(want);
    }
}

/* How many containers deep o (borrowed) goes: a scalar 0, () 1. */
static int
nesting(PyObject *o)
{
    Py_ssize_t i;
    int deepest = 0, d;

    if (PyTuple_Check(o) || PyList_Check(o)) {
        for (i = 0; i < PySequence_Fast_GET_SIZE(o); i++) {
            d = nesting(PySequence_Fast_GET_ITEM(o, i));
            deepest = d > deepest ? d : deepest;
        }
        return deepest + 1;
    }
    if (PyDict_Check(o)) {
        PyObject *k, *v;

        i = 0;
        while (PyDict_Next(o, &i, &k, &v)) {
            d = nesting(k);
            deepest = d > deepest ? d : deepest;
            d = nesting(v);
            deepest = d > deepest ? d : deepest;
        }
        return deepest + 1;
    }
    if (PyAnySet_Check(o)) {
        PyObject *k;
        Py_hash_t h;

        i = 0;
        while (_PySet_NextEntry(o, &i, &k, &h)) {
            d = nesting(k);
            deepest = d > deepest ? d : deepest;
        }
        return deepest + 1;
    }
    return 0;
}

/* MemoryError anywhere; ValueError where containers nest too deep. */
static int
allowed_error(int deepest)
{
    if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
        return 1;
    }
    return PyErr_ExceptionMatches(PyExc_ValueError)
           && deepest > ALKEY_KEY_MAX_NESTING;
}


/* ---- the target -------------------------------------------------------- */

static PyObject *
slice(PyObject *args, Py_ssize_t lo, Py_ssize_t hi)
{
    PyObject *t = PyTuple_GetSlice(args, lo, hi);

    if (t == NULL) {
        fail("cannot slice the arguments");
    }
    return t;
}

static int
same_plan(const alkey_keyplan *a, const alkey_keyplan *b)
{
    size_t i;

    if (a->len != b->len || a->nslots != b->nslots
        || (a->len > 0 && memcmp(a->buf, b->buf, a->len) != 0)) {
        return 0;
    }
    for (i = 0; i < a->nslots; i++) {
        if (a->slots[i].oid_off != b->slots[i].oid_off
            || a->slots[i].oid_len != b->slots[i].oid_len
            || a->slots[i].insert_at != b->slots[i].insert_at
            || a->slots[i].kind != b->slots[i].kind) {
            return 0;
        }
    }
    return 1;
}

static void
check_key(PyObject *args, const alkey_keyplan *plan, int deepest)
{
    char tokbuf[MAX_ARGS][32], shown[MAX_ARGS][3 * 32 + 2];
    alkey_slot_token toks[MAX_ARGS];
    const char *tokens[MAX_ARGS];
    size_t lens[MAX_ARGS], i, slot = 0;
    PyObject *key, *again, *hashed;
    const char *k;
    Py_ssize_t klen, nargs = PyTuple_GET_SIZE(args), seg = 0;
    size_t start = 0, pos;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    char hex[65];

    if (plan->nslots > MAX_ARGS) {
        fail("%zu slots for %zd arguments", plan->nslots, nargs);
    }
    for (i = 0; i < plan->nslots; i++) {
        /* In key form (esc()), and in two parts in odd slots, as a slot's
         * token and its epochs are: shown joined by ".". */
        lens[i] = 0;
        put_esc(shown[i], &lens[i], tokbuf[i],
                token_for_slot(i, tokbuf[i], sizeof(tokbuf[i])));
        toks[i].n = 1;
        toks[i].part[0] = shown[i];
        toks[i].len[0] = lens[i];
        if (i % 2 == 1) {
            toks[i].n = 2;
            toks[i].part[1] = "E";
            toks[i].len[1] = 1;
            memcpy(shown[i] + lens[i], ".E", 2);
            lens[i] += 2;
        }
        tokens[i] = shown[i];
        if (plan->slots[i].kind == ALKEY_OID_NONE
            || plan->slots[i].kind != alkey_oid_kind(
                   plan->buf + plan->slots[i].oid_off,
                   (Py_ssize_t)plan->slots[i].oid_len)) {
            fail("slot %zu has kind %d", i, plan->slots[i].kind);
        }
    }
    key = alkey_keyplan_finish((alkey_keyplan *)plan, toks, 0);
    if (key == NULL) {
        if (allowed_error(deepest)) {
            PyErr_Clear();
            return;
        }
        fail("finish failed");
    }
    if (!PyUnicode_CheckExact(key)) {
        fail("finish returned a %s", Py_TYPE(key)->tp_name);
    }
    k = PyUnicode_AsUTF8AndSize(key, &klen);
    if (k == NULL) {
        fail("the key is not UTF-8");
    }
    /* One segment per argument, split at every "/". */
    for (pos = 0; pos <= (size_t)klen; pos++) {
        if (pos < (size_t)klen && k[pos] != '/') {
            continue;
        }
        if (nargs == 0) {
            if (klen != 0) {
                fail("no arguments but the key %s", k);
            }
            break;
        }
        if (seg >= nargs) {
            fail("more segments than the %zd arguments in %s", nargs, k);
        }
        check_segment(PyTuple_GET_ITEM(args, seg), k + start, pos - start,
                      &slot, plan->nslots, tokens, lens);
        seg++;
        start = pos + 1;
    }
    if (seg != nargs || slot != plan->nslots) {
        fail("%zd segments and %zu slots for %zd arguments and %zu slots: %s",
             seg, slot, nargs, plan->nslots, k);
    }
    again = alkey_keyplan_finish((alkey_keyplan *)plan, toks, 0);
    if (again == NULL || PyUnicode_Compare(key, again) != 0) {
        fail("a second finish gave another key");
    }
    Py_DECREF(again);
    hashed = alkey_keyplan_finish((alkey_keyplan *)plan, toks, 1);
    if (hashed == NULL) {
        fail("hashed finish failed");
    }
    if (EVP_Digest(k, (size_t)klen, digest, &dlen, EVP_sha256(), NULL) != 1
        || dlen != 32) {
        fail("SHA-256 failed");
    }
    for (i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    }
    if (!PyUnicode_CheckExact(hashed)
        || PyUnicode_CompareWithASCIIString(hashed, hex) != 0) {
        fail("the hashed key is not the SHA-256 of %s", k);
    }
    Py_DECREF(hashed);
    Py_DECREF(key);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size, 0};
    alkey_keyplan whole, parts;
    PyObject *list, *args, *first, *second;
    refsnap before = {0}, after = {0};
    Py_ssize_t nargs, split;
    unsigned split_byte;
    int rc_whole, rc1, rc2, deepest;

    cur_data = data;
    cur_size = size;
    split_byte = next_byte(&r);
    list = PyList_New(0);
    if (list == NULL) {
        fail("PyList_New");
    }
    while (r.i < r.n && PyList_GET_SIZE(list) < MAX_ARGS) {
        PyObject *item = decode(&r, 0);

        if (PyList_Append(list, item) < 0) {
            fail("PyList_Append");
        }
        Py_DECREF(item);
    }
    args = PyList_AsTuple(list);
    Py_DECREF(list);
    if (args == NULL) {
        fail("PyList_AsTuple");
    }
    nargs = PyTuple_GET_SIZE(args);
    split = (Py_ssize_t)(split_byte % (unsigned)(nargs + 1));
    first = slice(args, 0, split);
    second = slice(args, split, nargs);
    snap_walk(&before, args);
    deepest = nesting(args) - 1;

    alkey_keyplan_init(&whole);
    rc_whole = alkey_keyplan_add_args(&whole, &state, args);
    if (rc_whole < 0) {
        if (!allowed_error(deepest)) {
            fail("add_args failed at nesting depth %d", deepest);
        }
        PyErr_Clear();
    }
    else if (deepest > ALKEY_KEY_MAX_NESTING) {
        fail("containers nested %d deep were keyed", deepest);
    }

    /* The same in two calls; a failing call leaves the plan as it was. */
    alkey_keyplan_init(&parts);
    rc1 = alkey_keyplan_add_args(&parts, &state, first);
    if (rc1 < 0) {
        PyErr_Clear();
    }
    else {
        size_t len = parts.len, nslots = parts.nslots;
        char *copy = malloc(len + 1);

        if (copy == NULL) {
            fail("out of memory");
        }
        if (len > 0) {
            memcpy(copy, parts.buf, len);
        }
        rc2 = alkey_keyplan_add_args(&parts, &state, second);
        if (rc2 < 0) {
            PyErr_Clear();
            if (parts.len != len || parts.nslots != nslots
                || (len > 0 && memcmp(copy, parts.buf, len) != 0)) {
                fail("a failed add_args changed the plan");
            }
        }
        else if (rc_whole == 0 && !same_plan(&whole, &parts)) {
            fail("two add_args calls made another plan than one");
        }
        else if (rc_whole < 0) {
            fail("add_args failed on the whole but not in parts");
        }
        free(copy);
    }
    if (rc_whole == 0) {
        check_key(args, &whole, deepest);
    }
    alkey_keyplan_free(&whole);
    alkey_keyplan_free(&parts);
    if (whole.buf != NULL || whole.len != 0 || whole.nslots != 0) {
        fail("alkey_keyplan_free left a used plan");
    }
    if (PyErr_Occurred()) {
        fail("an exception was left set");
    }

    snap_walk(&after, args);
    snap_compare(&before, &after);
    snap_free(&before);
    snap_free(&after);
    Py_DECREF(first);
    Py_DECREF(second);
    /* (The empty tuple is a shared singleton.) */
    if (nargs > 0 && Py_REFCNT(args) != 1) {
        fail("the argument tuple has %zd references", Py_REFCNT(args));
    }
    Py_DECREF(args);
    return 0;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    PyPreConfig pre;
    PyConfig config;
    PyStatus status;

    (void)argc;
    (void)argv;
    /* PYTHONMALLOC=malloc: pymalloc's arenas would hide overflows of small
     * PyMem buffers from ASan. */
    PyPreConfig_InitIsolatedConfig(&pre);
    pre.allocator = PYMEM_ALLOCATOR_MALLOC;
    status = Py_PreInitialize(&pre);
    if (PyStatus_Exception(status)) {
        Py_ExitStatusException(status);
    }
    /* What Py_InitializeEx(0) does, isolated from the environment and
     * with the home of the interpreter the build used. */
    PyConfig_InitIsolatedConfig(&config);
    config.install_signal_handlers = 0;
    config.site_import = 0;
    status = PyConfig_SetBytesString(&config, &config.home,
                                     ALKEY_FUZZ_PYTHON_HOME);
    if (!PyStatus_Exception(status)) {
        status = Py_InitializeFromConfig(&config);
    }
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        Py_ExitStatusException(status);
    }
    Py_SetRecursionLimit(RECURSION_LIMIT);
    return 0;
}
