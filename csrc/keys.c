/* Cache key encoding, identifier validation and hashing.
 *
 * The grammar and the encoding are specified in the project's key spec;
 * the comments here only say why the code is shaped the way it is. */
#include "keys.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define SHA256_LEN 32

static const char HEX_UPPER[] = "0123456789ABCDEF";
static const char HEX_LOWER[] = "0123456789abcdef";


/* ---- byte classes ------------------------------------------------------ */

/* What each byte is to the grammar and the escapes, one bit a class, so
 * that a scan costs a load a byte:
 *   BC_NAME      NAMECH: raw in a table or schema name
 *   BC_VAL       VALCH: raw in a tagged primary-key value
 *   BC_BYTES     raw in esc_all() (bytes values)
 *   BC_ESC_TEXT  escaped by esc() (text)
 *   BC_ESC_NAME  escaped by esc_name() (a type's names) */
enum {
    BC_NAME = 1,
    BC_VAL = 2,
    BC_BYTES = 4,
    BC_ESC_TEXT = 8,
    BC_ESC_NAME = 16,
};

/* Raw everywhere: letters, digits, "-" and "_". */
#define BC_PLAIN (BC_NAME | BC_VAL | BC_BYTES)

static const unsigned char BYTE_CLASS[256] = {
    ['0' ... '9'] = BC_PLAIN,
    ['A' ... 'Z'] = BC_PLAIN,
    ['a' ... 'z'] = BC_PLAIN,
    ['-'] = BC_PLAIN,
    ['_'] = BC_PLAIN,
    ['$'] = BC_NAME | BC_VAL,
    ['.'] = BC_VAL | BC_BYTES | BC_ESC_NAME,
    ['='] = BC_VAL | BC_ESC_NAME,
    [':'] = BC_VAL,
    ['@'] = BC_VAL,
    ['+'] = BC_VAL,
    ['!'] = BC_VAL,
    ['&'] = BC_VAL,
    ['\''] = BC_VAL,
    ['('] = BC_VAL,
    [')'] = BC_VAL,
    ['*'] = BC_VAL,
    [';'] = BC_VAL,
    ['%'] = BC_ESC_TEXT | BC_ESC_NAME,
    ['/'] = BC_ESC_TEXT | BC_ESC_NAME,
    ['~'] = BC_ESC_TEXT | BC_ESC_NAME,
};

static inline int
hex_upper_value(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}


/* ---- identifier grammar ------------------------------------------------ */

/* Scans 1*( raw | pct ) where raw bytes are of class raw and a pct escape
 * must name a byte that is not, so that every text has exactly
 * one spelling.  min_len is 1 for names, 0 for values.  Returns the end of
 * the run, or NULL if it is not well formed. */
static const unsigned char *
scan_escaped(const unsigned char *p, const unsigned char *end,
             unsigned char raw, size_t min_len)
{
    const unsigned char *start = p;

    while (p < end) {
        if (BYTE_CLASS[*p] & raw) {
            p++;
        }
        else if (*p == '%') {
            int hi, lo;

            if (end - p < 3) {
                return NULL;
            }
            hi = hex_upper_value(p[1]);
            lo = hex_upper_value(p[2]);
            if (hi < 0 || lo < 0 || (BYTE_CLASS[hi * 16 + lo] & raw)) {
                return NULL;
            }
            p += 3;
        }
        else {
            break;
        }
    }
    if ((size_t)(p - start) < min_len) {
        return NULL;
    }
    return p;
}

/* Scans one pk part: a canonical int, or tag ":" value. */
static const unsigned char *
scan_part(const unsigned char *p, const unsigned char *end)
{
    if (p == end) {
        return NULL;
    }
    if (*p == '0') {
        return p + 1;
    }
    if (*p == '-' || (*p >= '1' && *p <= '9')) {
        if (*p == '-') {
            p++;
            if (p == end || *p < '1' || *p > '9') {
                return NULL;
            }
        }
        p++;
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
        return p;
    }
    switch (*p) {
    case 's': case 'u': case 'b': case 'd': case 't': case 'n': case 'f':
    case 'x':
        break;
    default:
        return NULL;
    }
    if (end - p < 2 || p[1] != ':') {
        return NULL;
    }
    return scan_escaped(p + 2, end, BC_VAL, 0);
}

int
alkey_oid_kind(const char *s, Py_ssize_t n)
{
    const unsigned char *p, *end;

    if (s == NULL || n < 6 || memcmp(s, "alkey:", 6) != 0) {
        return ALKEY_OID_NONE;
    }
    p = (const unsigned char *)s + 6;
    end = (const unsigned char *)s + n;
    if (end - p == 3 && memcmp(p, "*#", 2) == 0) {
        if (p[2] == '*') {
            return ALKEY_OID_GLOBAL;
        }
        if (p[2] == '!') {
            return ALKEY_OID_EPOCH;
        }
        return ALKEY_OID_NONE;
    }
    p = scan_escaped(p, end, BC_NAME, 1);
    if (p == NULL) {
        return ALKEY_OID_NONE;
    }
    if (p < end && *p == '.') {
        p = scan_escaped(p + 1, end, BC_NAME, 1);
        if (p == NULL) {
            return ALKEY_OID_NONE;
        }
    }
    if (p == end || *p != '#') {
        return ALKEY_OID_NONE;
    }
    p++;
    if (end - p == 1 && *p == '*') {
        return ALKEY_OID_TABLE;
    }
    /* No pk part starts with "!" (parts start with a digit, "-" or a
     * tag), so the epoch form cannot be read as an instance. */
    if (end - p == 1 && *p == '!') {
        return ALKEY_OID_EPOCH;
    }
    for (;;) {
        p = scan_part(p, end);
        if (p == NULL) {
            return ALKEY_OID_NONE;
        }
        if (p == end) {
            return ALKEY_OID_INSTANCE;
        }
        if (*p != ',') {
            return ALKEY_OID_NONE;
        }
        p++;
    }
}

/* A name never holds a raw "#" (it is escaped as %23), so the first "#"
 * after the prefix ends the table. */
size_t
alkey_oid_table_len(const char *s, size_t n)
{
    const char *hash;

    assert(n > 6);
    hash = memchr(s + 6, '#', n - 6);
    assert(hash != NULL);
    return hash != NULL ? (size_t)(hash - s) : n;
}


/* ---- growable byte buffer ---------------------------------------------- */

/* Owns p (PyMem).  Lengths never exceed PY_SSIZE_T_MAX so that the text
 * can always become a str. */
typedef struct {
    char *p;
    size_t len, cap;
} kbuf;

static void
kb_free(kbuf *b)
{
    PyMem_Free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Makes room for extra more bytes.  Returns 0, or -1 with MemoryError. */
static int
kb_reserve(kbuf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (extra > (size_t)PY_SSIZE_T_MAX - b->len) {
        PyErr_NoMemory();
        return -1;
    }
    need = b->len + extra;
    if (need <= b->cap) {
        return 0;
    }
    cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need) {
        cap = cap > (size_t)PY_SSIZE_T_MAX / 2 ? (size_t)PY_SSIZE_T_MAX
                                                : cap * 2;
    }
    p = PyMem_Realloc(b->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int
kb_put(kbuf *b, const char *s, size_t n)
{
    if (kb_reserve(b, n) < 0) {
        return -1;
    }
    if (n > 0) {
        memcpy(b->p + b->len, s, n);
    }
    b->len += n;
    return 0;
}

static int
kb_putc(kbuf *b, char c)
{
    return kb_put(b, &c, 1);
}


/* ---- escapes ----------------------------------------------------------- */

/* The escapes of the spec: esc() of text, esc_all() of bytes, and
 * esc_name() of the module and qualified name of a type (which also
 * escapes "." and "=" so that module "a.b" + class "C" and module "a" +
 * class "b.C" differ).  Only leaves are escaped: an element nested in a
 * container is delimited by its length (put_element), never escaped
 * again. */
typedef enum { ESC_TEXT, ESC_ALL, ESC_NAME } esc_mode;

static inline int
needs_escape(unsigned char c, esc_mode mode)
{
    switch (mode) {
    case ESC_TEXT:
        return BYTE_CLASS[c] & BC_ESC_TEXT;
    case ESC_ALL:
        return !(BYTE_CLASS[c] & BC_BYTES);
    default:
        return BYTE_CLASS[c] & BC_ESC_NAME;
    }
}

static size_t
count_escapes(const char *s, size_t n, esc_mode mode)
{
    size_t i, count = 0;

    for (i = 0; i < n; i++) {
        count += (size_t)needs_escape((unsigned char)s[i], mode);
    }
    return count;
}

/* Appends s escaped by mode.  Counts first so that a large text costs one
 * allocation instead of a growth per escape. */
static int
kb_escape(kbuf *b, const char *s, size_t n, esc_mode mode)
{
    size_t i, count = count_escapes(s, n, mode);
    char *o;

    if (count > ((size_t)PY_SSIZE_T_MAX - n) / 2) {
        PyErr_NoMemory();
        return -1;
    }
    if (kb_reserve(b, n + 2 * count) < 0) {
        return -1;
    }
    if (count == 0) {
        return kb_put(b, s, n);
    }
    o = b->p + b->len;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (needs_escape(c, mode)) {
            *o++ = '%';
            *o++ = HEX_UPPER[c >> 4];
            *o++ = HEX_UPPER[c & 15];
        }
        else {
            *o++ = (char)c;
        }
    }
    b->len = (size_t)(o - b->p);
    return 0;
}


/* ---- value encoding ---------------------------------------------------- */

static int encode_value(kbuf *out, PyObject *obj, PyObject *resolver,
                        PyObject *container, int depth, PyObject **oid);

/* A str that has no UTF-8 form (lone surrogates), called with the
 * UnicodeEncodeError of PyUnicode_AsUTF8AndSize() set: "~x" + esc_all of
 * its surrogatepass bytes.  Borrows obj. */
static int
encode_surrogates(kbuf *out, PyObject *obj)
{
    PyObject *raw = NULL;
    int rc = -1;

    if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
        goto done;
    }
    PyErr_Clear();
    raw = PyUnicode_AsEncodedString(obj, "utf-8", "surrogatepass");
    if (raw == NULL) {
        goto done;
    }
    if (kb_put(out, "~x", 2) < 0
        || kb_escape(out, PyBytes_AS_STRING(raw),
                     (size_t)PyBytes_GET_SIZE(raw), ESC_ALL) < 0) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(raw);
    return rc;
}

/* A str that is not an identifier.  Borrows obj. */
static int
encode_text(kbuf *out, PyObject *obj)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(obj, &n);

    if (s == NULL) {
        return encode_surrogates(out, obj);
    }
    if (n == 0) {
        return kb_put(out, "~E", 2);
    }
    return kb_escape(out, s, (size_t)n, ESC_TEXT);
}

/* Appends tag followed by the ASCII text of str (which it borrows). */
static int
put_ascii_str(kbuf *out, const char *tag, PyObject *str)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(str, &n);

    if (s == NULL) {
        return -1;
    }
    if (kb_put(out, tag, strlen(tag)) < 0) {
        return -1;
    }
    return kb_put(out, s, (size_t)n);
}

/* An int or int subclass (IntEnum...): its value in decimal, never the
 * subclass's own __str__.  Borrows obj. */
static int
encode_int(kbuf *out, PyObject *obj)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    PyObject *text = NULL;
    int rc = -1;

    if (v == -1 && PyErr_Occurred()) {
        goto done;
    }
    if (!overflow) {
        char tmp[32];
        int n = PyOS_snprintf(tmp, sizeof(tmp), "~i%lld", v);

        if (n < 0 || (size_t)n >= sizeof(tmp)) {
            PyErr_SetString(PyExc_SystemError, "cannot format an int");
            goto done;
        }
        rc = kb_put(out, tmp, (size_t)n);
        goto done;
    }
    text = PyNumber_ToBase(obj, 10);
    if (text == NULL) {
        goto done;
    }
    rc = put_ascii_str(out, "~i", text);
done:
    Py_XDECREF(text);
    return rc;
}

/* A float or float subclass: float's repr, whatever the subclass says. */
static int
encode_float(kbuf *out, PyObject *obj)
{
    PyObject *text = PyFloat_Type.tp_repr(obj);
    int rc;

    if (text == NULL) {
        return -1;
    }
    rc = put_ascii_str(out, "~f", text);
    Py_DECREF(text);
    return rc;
}

/* Asks the resolver (borrowed, may be NULL) what obj (borrowed) is.  Sets
 * *oid to a new reference to a valid identifier, or to NULL when obj is
 * no model instance or class.  Returns 0, or -1 with an exception set. */
static int
resolve(PyObject *resolver, PyObject *obj, PyObject **oid)
{
    PyObject *res = NULL;
    const char *s;
    Py_ssize_t n;
    int rc = -1;

    *oid = NULL;
    if (resolver == NULL) {
        return 0;
    }
    res = PyObject_CallOneArg(resolver, obj);
    if (res == NULL) {
        goto done;
    }
    if (res == Py_None) {
        rc = 0;
        goto done;
    }
    if (!PyUnicode_Check(res)) {
        PyErr_Format(PyExc_TypeError,
                     "the identifier resolver must return a str or None, "
                     "not %.200s", Py_TYPE(res)->tp_name);
        goto done;
    }
    s = PyUnicode_AsUTF8AndSize(res, &n);
    if (s == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            goto done;
        }
        PyErr_Clear();
    }
    if (s == NULL || alkey_oid_kind(s, n) == ALKEY_OID_NONE) {
        PyErr_Format(PyExc_ValueError,
                     "the identifier resolver returned %R for a %.200s "
                     "object, which is not a valid identifier",
                     res, Py_TYPE(obj)->tp_name);
        goto done;
    }
    *oid = res;
    res = NULL;
    rc = 0;
done:
    Py_XDECREF(res);
    return rc;
}

/* Appends esc_name(str(attr)) for an attribute of type (both borrowed). */
static int
put_type_attr(kbuf *out, PyObject *type, const char *attr)
{
    PyObject *value = NULL, *text = NULL;
    const char *s;
    Py_ssize_t n;
    int rc = -1;

    value = PyObject_GetAttrString(type, attr);
    if (value == NULL) {
        goto done;
    }
    text = PyObject_Str(value);
    if (text == NULL) {
        goto done;
    }
    s = PyUnicode_AsUTF8AndSize(text, &n);
    if (s == NULL) {
        goto done;
    }
    rc = kb_escape(out, s, (size_t)n, ESC_NAME);
done:
    Py_XDECREF(value);
    Py_XDECREF(text);
    return rc;
}

/* Any other value that is no identifier: "~o" + esc_name(module) + "." +
 * esc_name(qualname) + "=" + esc(str(obj)).  Refuses objects whose text is only their memory
 * address, which would make a key that never repeats.  Borrows obj. */
static int
encode_other(kbuf *out, PyObject *obj)
{
    PyTypeObject *tp = Py_TYPE(obj);
    PyObject *text = NULL;
    const char *s;
    Py_ssize_t n;
    int rc = -1;

    if (tp->tp_str == PyBaseObject_Type.tp_str
        && tp->tp_repr == PyBaseObject_Type.tp_repr) {
        PyErr_Format(PyExc_TypeError,
                     "cannot key a %.200s object: its text is its memory "
                     "address, so the key would never repeat; pass a value "
                     "that identifies it, or define __str__", tp->tp_name);
        goto done;
    }
    text = PyObject_Str(obj);
    if (text == NULL) {
        goto done;
    }
    s = PyUnicode_AsUTF8AndSize(text, &n);
    if (s == NULL) {
        goto done;
    }
    if (kb_put(out, "~o", 2) < 0
        || put_type_attr(out, (PyObject *)tp, "__module__") < 0
        || kb_putc(out, '.') < 0
        || put_type_attr(out, (PyObject *)tp, "__qualname__") < 0
        || kb_putc(out, '=') < 0
        || kb_escape(out, s, (size_t)n, ESC_TEXT) < 0) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(text);
    return rc;
}

/* Refuses a container (borrowed) inside depth others when that is more
 * than ALKEY_KEY_MAX_NESTING levels: the limit keeps the encoder's
 * recursion, and the copies of put_element(), bounded whatever the
 * input. */
static int
check_nesting(PyObject *container, int depth)
{
    if (depth < ALKEY_KEY_MAX_NESTING) {
        return 0;
    }
    PyErr_Format(PyExc_ValueError,
                 "cannot key containers nested more than %d deep (a %.200s "
                 "at level %d): flatten the value, or pass its parts as "
                 "separate arguments", ALKEY_KEY_MAX_NESTING,
                 Py_TYPE(container)->tp_name, depth + 1);
    return -1;
}

/* Writes v in decimal to buf (room for 20 digits); returns the length. */
static size_t
format_size(char *buf, size_t v)
{
    char tmp[20];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (i = 0; i < n; i++) {
        buf[i] = tmp[n - 1 - i];
    }
    return n;
}

/* Appends elem(obj) = "<len>:" enc(obj), len being the byte length of
 * enc(obj) in decimal, for obj (borrowed) inside container (borrowed) at
 * the given depth.  The length, not an escape, says where the element
 * ends: each byte of the key is escaped once at most, by its leaf, and a
 * level of nesting adds a few bytes only.  enc(obj) is written in place
 * and then moved past its length. */
static int
put_element(kbuf *out, PyObject *obj, PyObject *resolver,
            PyObject *container, int depth)
{
    size_t start = out->len, len, n;
    char prefix[21];

    if (encode_value(out, obj, resolver, container, depth, NULL) < 0) {
        return -1;
    }
    len = out->len - start;
    n = format_size(prefix, len);
    prefix[n++] = ':';
    if (kb_reserve(out, n) < 0) {
        return -1;
    }
    memmove(out->p + start + n, out->p + start, len);
    memcpy(out->p + start, prefix, n);
    out->len += n;
    return 0;
}

/* tuple / list: "~t(" or "~l(" + the elem() of each element joined by
 * "," + ")".  Reads the size at every step and holds each item because
 * the resolver or a __str__ may mutate a list while it is encoded. */
static int
encode_sequence(kbuf *out, PyObject *seq, PyObject *resolver, int depth)
{
    PyObject *item = NULL;
    Py_ssize_t i;
    int rc = -1;

    if (check_nesting(seq, depth) < 0) {
        return -1;
    }
    if (Py_EnterRecursiveCall(" while encoding a cache key")) {
        return -1;
    }
    if (kb_put(out, PyTuple_Check(seq) ? "~t(" : "~l(", 3) < 0) {
        goto done;
    }
    for (i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        item = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));
        if ((i > 0 && kb_putc(out, ',') < 0)
            || put_element(out, item, resolver, seq, depth + 1) < 0) {
            goto done;
        }
        Py_CLEAR(item);
    }
    if (kb_putc(out, ')') < 0) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(item);
    Py_LeaveRecursiveCall();
    return rc;
}

/* One element of a set or dict in a shared buffer; p is only filled in
 * once the buffer stops moving. */
typedef struct {
    const char *p;
    size_t off, len;
} span;

static int
compare_spans(const void *a, const void *b)
{
    const span *x = a, *y = b;
    int c = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);

    if (c != 0) {
        return c;
    }
    return (x->len > y->len) - (x->len < y->len);
}

static int
add_span(span **spans, size_t *n, size_t *cap, size_t off, size_t len)
{
    if (*n == *cap) {
        size_t new_cap = *cap ? *cap * 2 : 8;
        span *p;

        if (new_cap > (size_t)PY_SSIZE_T_MAX / sizeof(span)) {
            PyErr_NoMemory();
            return -1;
        }
        p = PyMem_Realloc(*spans, new_cap * sizeof(span));
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *spans = p;
        *cap = new_cap;
    }
    (*spans)[*n].off = off;
    (*spans)[*n].len = len;
    (*n)++;
    return 0;
}

/* set / frozenset ("~s(") and dict ("~d("): the elem() of each member
 * (dict: elem(key) "=" elem(value)) sorted bytewise and joined by ",", so
 * that iteration order never shows in the key.  Borrows obj. */
static int
encode_unordered(kbuf *out, PyObject *obj, PyObject *resolver, int depth)
{
    kbuf elems = {NULL, 0, 0};
    span *spans = NULL;
    size_t nspans = 0, spans_cap = 0, i;
    PyObject *iter = NULL, *items = NULL, *item = NULL;
    int is_dict = PyDict_Check(obj);
    int rc = -1;

    if (check_nesting(obj, depth) < 0) {
        return -1;
    }
    if (Py_EnterRecursiveCall(" while encoding a cache key")) {
        return -1;
    }
    if (is_dict) {
        /* A snapshot: a __str__ or the resolver may change the dict. */
        items = PyDict_Items(obj);
        if (items == NULL) {
            goto done;
        }
        iter = PyObject_GetIter(items);
    }
    else {
        iter = PyObject_GetIter(obj);
    }
    if (iter == NULL) {
        goto done;
    }
    while ((item = PyIter_Next(iter)) != NULL) {
        size_t start = elems.len;

        if (is_dict) {
            if (put_element(&elems, PyTuple_GET_ITEM(item, 0), resolver, obj,
                            depth + 1) < 0
                || kb_putc(&elems, '=') < 0
                || put_element(&elems, PyTuple_GET_ITEM(item, 1), resolver,
                               obj, depth + 1) < 0) {
                goto done;
            }
        }
        else if (put_element(&elems, item, resolver, obj, depth + 1) < 0) {
            goto done;
        }
        if (add_span(&spans, &nspans, &spans_cap, start,
                     elems.len - start) < 0) {
            goto done;
        }
        Py_CLEAR(item);
    }
    if (PyErr_Occurred()) {
        goto done;
    }
    for (i = 0; i < nspans; i++) {
        spans[i].p = elems.p + spans[i].off;
    }
    if (nspans > 1) {
        qsort(spans, nspans, sizeof(span), compare_spans);
    }
    /* One reservation: "~d(" + the members + a "," between two + ")". */
    if (kb_reserve(out, elems.len + nspans + 4) < 0
        || kb_put(out, is_dict ? "~d(" : "~s(", 3) < 0) {
        goto done;
    }
    for (i = 0; i < nspans; i++) {
        if ((i > 0 && kb_putc(out, ',') < 0)
            || kb_put(out, spans[i].p, spans[i].len) < 0) {
            goto done;
        }
    }
    if (kb_putc(out, ')') < 0) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(item);
    Py_XDECREF(iter);
    Py_XDECREF(items);
    PyMem_Free(spans);
    kb_free(&elems);
    Py_LeaveRecursiveCall();
    return rc;
}

/* Appends the encoding of obj (borrowed).  container is the enclosing
 * container (borrowed), or NULL at the top level, where oid must be
 * non-NULL: an object the resolver maps to an identifier then sets *oid
 * to a new reference to it and appends nothing.  depth is the number of
 * containers around obj.  Strings are always text here; the caller
 * decides whether a top-level str is an identifier. */
static int
encode_value(kbuf *out, PyObject *obj, PyObject *resolver,
             PyObject *container, int depth, PyObject **oid)
{
    PyObject *found = NULL;

    if (PyUnicode_Check(obj)) {
        return encode_text(out, obj);
    }
    if (PyBool_Check(obj)) {
        return kb_put(out, obj == Py_True ? "~T" : "~F", 2);
    }
    if (PyLong_Check(obj)) {
        return encode_int(out, obj);
    }
    if (PyFloat_Check(obj)) {
        return encode_float(out, obj);
    }
    if (obj == Py_None) {
        return kb_put(out, "~N", 2);
    }
    if (PyBytes_Check(obj)) {
        if (kb_put(out, "~b", 2) < 0) {
            return -1;
        }
        return kb_escape(out, PyBytes_AS_STRING(obj),
                         (size_t)PyBytes_GET_SIZE(obj), ESC_ALL);
    }
    if (PyByteArray_Check(obj)) {
        if (kb_put(out, "~b", 2) < 0) {
            return -1;
        }
        return kb_escape(out, PyByteArray_AS_STRING(obj),
                         (size_t)PyByteArray_GET_SIZE(obj), ESC_ALL);
    }
    if (PyTuple_Check(obj) || PyList_Check(obj)) {
        return encode_sequence(out, obj, resolver, depth);
    }
    if (PyAnySet_Check(obj) || PyDict_Check(obj)) {
        return encode_unordered(out, obj, resolver, depth);
    }
    if (resolve(resolver, obj, &found) < 0) {
        return -1;
    }
    if (found == NULL) {
        return encode_other(out, obj);
    }
    if (container != NULL) {
        Py_DECREF(found);
        PyErr_Format(PyExc_TypeError,
                     "cannot key a model instance or class inside a %.200s: "
                     "pass it as a separate argument",
                     Py_TYPE(container)->tp_name);
        return -1;
    }
    *oid = found;
    return 0;
}


/* ---- key plan ---------------------------------------------------------- */

void
alkey_keyplan_init(alkey_keyplan *plan)
{
    memset(plan, 0, sizeof(*plan));
}

void
alkey_keyplan_free(alkey_keyplan *plan)
{
    PyMem_Free(plan->buf);
    PyMem_Free(plan->slots);
    alkey_keyplan_init(plan);
}

/* Makes room in plan for extra more slots.  Returns 0, or -1 with
 * MemoryError. */
static int
reserve_slots(alkey_keyplan *plan, size_t extra)
{
    size_t cap;
    alkey_slot *p;

    if (extra <= plan->slots_cap - plan->nslots) {
        return 0;
    }
    if (extra > (size_t)PY_SSIZE_T_MAX / sizeof(alkey_slot) - plan->nslots) {
        PyErr_NoMemory();
        return -1;
    }
    cap = plan->slots_cap ? plan->slots_cap : 4;
    while (cap < plan->nslots + extra) {
        cap *= 2;
    }
    if (cap > (size_t)PY_SSIZE_T_MAX / sizeof(alkey_slot)) {
        cap = plan->nslots + extra;
    }
    p = PyMem_Realloc(plan->slots, cap * sizeof(alkey_slot));
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    plan->slots = p;
    plan->slots_cap = cap;
    return 0;
}

/* Appends "<oid>~" to out and a slot for its token to plan; kind is what
 * alkey_oid_kind() says of oid. */
static int
add_identifier(alkey_keyplan *plan, kbuf *out, const char *oid, size_t n,
               int kind)
{
    size_t off = out->len;
    alkey_slot *slot;

    if (kb_put(out, oid, n) < 0 || kb_putc(out, '~') < 0
        || reserve_slots(plan, 1) < 0) {
        return -1;
    }
    slot = &plan->slots[plan->nslots++];
    slot->oid_off = off;
    slot->oid_len = n;
    slot->insert_at = out->len;
    slot->kind = kind;
    return 0;
}

/* One top-level argument (borrowed); resolver is borrowed and may be
 * NULL. */
static int
add_arg(alkey_keyplan *plan, kbuf *out, PyObject *item, PyObject *resolver)
{
    PyObject *oid = NULL;
    const char *s;
    Py_ssize_t n;
    int kind, rc = -1;

    if (PyUnicode_Check(item)) {
        s = PyUnicode_AsUTF8AndSize(item, &n);
        if (s == NULL) {
            return encode_surrogates(out, item);
        }
        kind = alkey_oid_kind(s, n);
        if (kind != ALKEY_OID_NONE) {
            return add_identifier(plan, out, s, (size_t)n, kind);
        }
        if (n == 0) {
            return kb_put(out, "~E", 2);
        }
        return kb_escape(out, s, (size_t)n, ESC_TEXT);
    }
    if (encode_value(out, item, resolver, NULL, 0, &oid) < 0) {
        goto done;
    }
    if (oid != NULL) {
        /* resolve() checked it: the kind is not NONE. */
        s = PyUnicode_AsUTF8AndSize(oid, &n);
        if (s == NULL
            || add_identifier(plan, out, s, (size_t)n,
                              alkey_oid_kind(s, n)) < 0) {
            goto done;
        }
    }
    rc = 0;
done:
    Py_XDECREF(oid);
    return rc;
}

/* The most alkey_keyplan_add_args() reserves before it knows. */
#define KEY_GUESS_MAX ((size_t)1 << 20)

/* Segments of successive calls are joined by "/" too, so adding a then b
 * is the same as adding a + b.  On failure the plan is left as it was. */
int
alkey_keyplan_add_args(alkey_keyplan *plan, alkey_state *st, PyObject *args)
{
    kbuf out = {plan->buf, plan->len, plan->cap};
    size_t start_len = plan->len, start_slots = plan->nslots;
    PyObject *seq = NULL, *item = NULL, *resolver = NULL;
    Py_ssize_t i;
    int rc = -1;

    if (!PyTuple_Check(args) && !PyList_Check(args)) {
        PyErr_Format(PyExc_TypeError,
                     "key arguments must be a tuple or list, not %.200s",
                     Py_TYPE(args)->tp_name);
        goto done;
    }
    seq = PySequence_Fast(args, "key arguments must be a tuple or list");
    if (seq == NULL) {
        goto done;
    }
    /* Room, in one growth each, for what a call of identifiers and short
     * strs needs: a slot per argument at most, a str's length and its
     * "~" and "/".  Only a guess (and at most KEY_GUESS_MAX) for other
     * arguments. */
    {
        Py_ssize_t nargs = PySequence_Fast_GET_SIZE(seq);
        size_t guess = 0;

        for (i = 0; i < nargs && guess < KEY_GUESS_MAX; i++) {
            PyObject *arg = PySequence_Fast_GET_ITEM(seq, i);

            guess += PyUnicode_Check(arg)
                     ? (size_t)PyUnicode_GET_LENGTH(arg) + 2 : 8;
        }
        if (guess > KEY_GUESS_MAX) {
            guess = KEY_GUESS_MAX;
        }
        if (reserve_slots(plan, (size_t)nargs) < 0
            || kb_reserve(&out, guess) < 0) {
            goto done;
        }
    }
    /* Held: the resolver may be replaced while it runs. */
    resolver = Py_XNewRef(st->resolver);
    for (i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        item = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));
        if (out.len > 0 && kb_putc(&out, '/') < 0) {
            goto done;
        }
        if (add_arg(plan, &out, item, resolver) < 0) {
            goto done;
        }
        Py_CLEAR(item);
    }
    rc = 0;
done:
    if (rc < 0) {
        out.len = start_len;
        plan->nslots = start_slots;
    }
    plan->buf = out.p;
    plan->len = out.len;
    plan->cap = out.cap;
    Py_XDECREF(item);
    Py_XDECREF(seq);
    Py_XDECREF(resolver);
    return rc;
}


/* ---- joining and hashing ----------------------------------------------- */

/* True if none of the n bytes at s has its high bit set; a word at a
 * time, since a key is mostly tokens and identifiers. */
static int
is_ascii(const char *s, size_t n)
{
    uint64_t acc = 0, word;
    size_t i = 0;

    if (n < 8) {
        for (; i < n; i++) {
            acc |= (unsigned char)s[i];
        }
        return (acc & 0x80) == 0;
    }
    for (; i + 8 <= n; i += 8) {
        memcpy(&word, s + i, 8);
        acc |= word;
    }
    /* The tail as the last 8 bytes, some of them read twice. */
    memcpy(&word, s + n - 8, 8);
    acc |= word;
    return (acc & UINT64_C(0x8080808080808080)) == 0;
}

/* The length of the key, or (size_t)-1 (MemoryError set) when it could
 * not be a str; *ascii tells whether all of it is ASCII. */
static size_t
key_size(const alkey_keyplan *plan, const alkey_slot_token *tokens,
         int *ascii)
{
    size_t total = plan->len, i;
    int j;

    *ascii = is_ascii(plan->buf != NULL ? plan->buf : "", plan->len);
    for (i = 0; i < plan->nslots; i++) {
        const alkey_slot_token *t = &tokens[i];

        assert(t->n >= 1 && t->n <= ALKEY_TOKEN_MAX_PARTS);
        for (j = 0; j < t->n; j++) {
            /* A part and the "." before it. */
            if (t->len[j] >= (size_t)PY_SSIZE_T_MAX - total) {
                PyErr_NoMemory();
                return (size_t)-1;
            }
            total += t->len[j] + (j > 0);
            if (*ascii && !is_ascii(t->part[j], t->len[j])) {
                *ascii = 0;
            }
        }
    }
    return total;
}

/* Writes the key to o, which has room for key_size() bytes: the plan's
 * text with each slot's token parts, joined by ".", in its hole. */
static void
write_key(const alkey_keyplan *plan, const alkey_slot_token *tokens, char *o)
{
    size_t i, pos = 0;
    int j;

    for (i = 0; i < plan->nslots; i++) {
        const alkey_slot_token *t = &tokens[i];
        size_t at = plan->slots[i].insert_at;

        memcpy(o, plan->buf + pos, at - pos);
        o += at - pos;
        for (j = 0; j < t->n; j++) {
            if (j > 0) {
                *o++ = '.';
            }
            memcpy(o, t->part[j], t->len[j]);
            o += t->len[j];
        }
        pos = at;
    }
    if (plan->len > pos) {
        memcpy(o, plan->buf + pos, plan->len - pos);
    }
}

/* The lowercase hex SHA-256 of the n bytes at p, as a new str. */
static PyObject *
hex_sha256(const char *p, size_t n)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0, i;
    char hex[2 * SHA256_LEN];

    if (EVP_Digest(p, n, digest, &digest_len, EVP_sha256(), NULL) != 1
        || digest_len != SHA256_LEN) {
        PyErr_SetString(PyExc_RuntimeError, "SHA-256 failed");
        return NULL;
    }
    for (i = 0; i < SHA256_LEN; i++) {
        hex[2 * i] = HEX_LOWER[digest[i] >> 4];
        hex[2 * i + 1] = HEX_LOWER[digest[i] & 15];
    }
    return PyUnicode_FromStringAndSize(hex, sizeof(hex));
}

/* Borrows plan and the tokens; the plan stays usable.  An ASCII key (the
 * usual one: identifiers, tokens, ASCII text) is written straight into
 * the str; any other is written to a buffer and decoded, as is the text
 * a hashed key digests. */
PyObject *
alkey_keyplan_finish(alkey_keyplan *plan, const alkey_slot_token *tokens,
                     int hashed)
{
    kbuf key = {NULL, 0, 0};
    PyObject *result = NULL;
    size_t total;
    int ascii;

    total = key_size(plan, tokens, &ascii);
    if (total == (size_t)-1) {
        return NULL;
    }
    if (ascii && !hashed) {
        result = PyUnicode_New((Py_ssize_t)total, 127);
        if (result != NULL) {
            write_key(plan, tokens, (char *)PyUnicode_1BYTE_DATA(result));
        }
        return result;
    }
    if (kb_reserve(&key, total ? total : 1) < 0) {
        return NULL;
    }
    write_key(plan, tokens, key.p);
    key.len = total;
    if (hashed) {
        result = hex_sha256(key.p, key.len);
    }
    else {
        result = PyUnicode_DecodeUTF8(key.p, (Py_ssize_t)key.len, NULL);
    }
    kb_free(&key);
    return result;
}


/* ---- module-level functions -------------------------------------------- */

/* Kind of arg (borrowed) as an identifier; anything but a str is none. */
static int
object_oid_kind(PyObject *arg, int *kind)
{
    const char *s;
    Py_ssize_t n;

    *kind = ALKEY_OID_NONE;
    if (!PyUnicode_Check(arg)) {
        return 0;
    }
    s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (s == NULL) {
        /* Lone surrogates: not ASCII, so no identifier. */
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            return -1;
        }
        PyErr_Clear();
        return 0;
    }
    *kind = alkey_oid_kind(s, n);
    return 0;
}

const char alkey_valid_object_id_doc[] = PyDoc_STR(
    "valid_object_id($module, s, /)\n--\n\n"
    "True if s is a str naming one model instance, such as\n"
    "'alkey:users#1'; False for anything else (tables, the global token,\n"
    "epochs such as 'alkey:users#!'), never an error.");

PyObject *
alkey_py_valid_object_id(PyObject *module, PyObject *arg)
{
    int kind;

    (void)module;
    if (object_oid_kind(arg, &kind) < 0) {
        return NULL;
    }
    return PyBool_FromLong(kind == ALKEY_OID_INSTANCE);
}

const char alkey_valid_write_token_doc[] = PyDoc_STR(
    "valid_write_token($module, s, /)\n--\n\n"
    "True if s is a str naming a table token, such as 'alkey:users#*',\n"
    "or the global write token 'alkey:*#*'; False for anything else\n"
    "(epochs such as 'alkey:users#!' or 'alkey:*#!' included), never an\n"
    "error.");

PyObject *
alkey_py_valid_write_token(PyObject *module, PyObject *arg)
{
    int kind;

    (void)module;
    if (object_oid_kind(arg, &kind) < 0) {
        return NULL;
    }
    return PyBool_FromLong(kind == ALKEY_OID_TABLE
                           || kind == ALKEY_OID_GLOBAL);
}

const char alkey_oid_kind_doc[] = PyDoc_STR(
    "oid_kind($module, s, /)\n--\n\n"
    "What s names: 'instance' ('alkey:users#1'), 'table' ('alkey:users#*'),\n"
    "'global' ('alkey:*#*'), 'epoch' ('alkey:users#!' or the global epoch\n"
    "'alkey:*#!'), or None for anything else (not a str, or not in the\n"
    "grammar), never an error.");

PyObject *
alkey_py_oid_kind(PyObject *module, PyObject *arg)
{
    static const char *const names[] = {
        [ALKEY_OID_INSTANCE] = "instance",
        [ALKEY_OID_TABLE] = "table",
        [ALKEY_OID_GLOBAL] = "global",
        [ALKEY_OID_EPOCH] = "epoch",
    };
    int kind;

    (void)module;
    if (object_oid_kind(arg, &kind) < 0) {
        return NULL;
    }
    if (kind == ALKEY_OID_NONE) {
        Py_RETURN_NONE;
    }
    return PyUnicode_InternFromString(names[kind]);
}

const char alkey_encode_key_doc[] = PyDoc_STR(
    "encode_key($module, args, tokens, hashed=False, /)\n--\n\n"
    "The cache key of the tuple or list args.  Every top-level identifier\n"
    "(an identifier str, or an object the resolver maps to one) is a slot;\n"
    "tokens holds one str per slot, in order.  With hashed true, returns\n"
    "the 64-character hex SHA-256 of the key instead.");

PyObject *
alkey_py_encode_key(PyObject *module, PyObject *const *args,
                    Py_ssize_t nargs)
{
    alkey_keyplan plan;
    alkey_state *st;
    PyObject *seq = NULL, *result = NULL;
    alkey_slot_token *tokens = NULL;
    size_t *offs = NULL;
    kbuf text = {NULL, 0, 0};
    Py_ssize_t i, n;
    int hashed = 0;

    alkey_keyplan_init(&plan);
    if (nargs < 2 || nargs > 3) {
        PyErr_Format(PyExc_TypeError,
                     "encode_key expected 2 or 3 arguments, got %zd", nargs);
        goto done;
    }
    if (nargs == 3) {
        hashed = PyObject_IsTrue(args[2]);
        if (hashed < 0) {
            goto done;
        }
    }
    if (!PyTuple_Check(args[1]) && !PyList_Check(args[1])) {
        PyErr_Format(PyExc_TypeError,
                     "tokens must be a list or tuple, not %.200s",
                     Py_TYPE(args[1])->tp_name);
        goto done;
    }
    st = alkey_get_state(module);
    if (st == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_SystemError, "alkey module has no state");
        }
        goto done;
    }
    if (alkey_keyplan_add_args(&plan, st, args[0]) < 0) {
        goto done;
    }
    /* Taken after the resolver ran: it could have changed the list. */
    seq = PySequence_Fast(args[1], "tokens must be a list or tuple");
    if (seq == NULL) {
        goto done;
    }
    n = PySequence_Fast_GET_SIZE(seq);
    if ((size_t)n != plan.nslots) {
        PyErr_Format(PyExc_ValueError,
                     "expected %zu tokens (one per identifier), got %zd",
                     plan.nslots, n);
        goto done;
    }
    tokens = PyMem_New(alkey_slot_token, n ? (size_t)n : 1);
    offs = PyMem_New(size_t, n ? (size_t)n : 1);
    if (tokens == NULL || offs == NULL || kb_reserve(&text, 1) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    /* esc() of every token, one after the other in text; pointed to once
     * text stops moving. */
    for (i = 0; i < n; i++) {
        PyObject *tok = PySequence_Fast_GET_ITEM(seq, i);
        const char *s;
        Py_ssize_t len;

        if (!PyUnicode_Check(tok)) {
            PyErr_Format(PyExc_TypeError,
                         "token %zd must be a str, not %.200s",
                         i, Py_TYPE(tok)->tp_name);
            goto done;
        }
        s = PyUnicode_AsUTF8AndSize(tok, &len);
        if (s == NULL) {
            goto done;
        }
        offs[i] = text.len;
        if (kb_escape(&text, s, (size_t)len, ESC_TEXT) < 0) {
            goto done;
        }
    }
    for (i = 0; i < n; i++) {
        size_t end = i + 1 < n ? offs[i + 1] : text.len;

        tokens[i].n = 1;
        tokens[i].part[0] = text.p + offs[i];
        tokens[i].len[0] = end - offs[i];
    }
    result = alkey_keyplan_finish(&plan, tokens, hashed);
done:
    PyMem_Free(tokens);
    PyMem_Free(offs);
    kb_free(&text);
    Py_XDECREF(seq);
    alkey_keyplan_free(&plan);
    return result;
}
