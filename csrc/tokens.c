/* Tokens: looking them up in Redis, creating the missing ones atomically,
 * and building cache keys from them.
 *
 * A cache key slot's token is its identifier's token joined by "." with
 * the epochs it folds in (see keyset_build): an instance's table epoch and
 * the global epoch, which bulk writes replace.
 *
 * A lookup is one MGET of every token key of a call.  Only when some are
 * missing is there a second round trip: SET key token NX EX ttl for each
 * missing one, then an MGET of those, pipelined, so that whatever token won
 * the race (ours or a concurrent commit's) is the one used. */
#include "tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "client.h"
#include "keys.h"
#include "stats.h"

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int
alkey_random_token(char out[ALKEY_TOKEN_LEN])
{
    unsigned char raw[16];
    size_t got = 0;
    int i, bit;

    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        got += (size_t)n;
    }
    /* 128 bits as 22 six-bit digits (the last holds 2 bits). */
    for (i = 0, bit = 0; i < ALKEY_TOKEN_LEN; i++, bit += 6) {
        int byte = bit / 8, shift = bit % 8;
        unsigned v = (unsigned)raw[byte] << 8;
        if (byte + 1 < (int)sizeof(raw)) {
            v |= raw[byte + 1];
        }
        out[i] = b64url[(v >> (10 - shift)) & 0x3F];
    }
    return 0;
}

/* What tokenset_put() writes as %XX, by byte.  TOK_ALWAYS: bytes outside
 * printable ASCII, and "%", so that a token set by hand (set_token) with
 * any value still reads back, and gives a valid, injective key.
 * TOK_IN_KEY: the bytes that delimit a key's parts, "." (between the
 * parts of a slot's token), "/" (between arguments) and "~" (after an
 * identifier), so that a token escaped for a key is copied into it as it
 * is. */
enum { TOK_ALWAYS = 1, TOK_IN_KEY = 2 };

static const unsigned char TOKEN_ESCAPE[256] = {
    [0x00 ... 0x20] = TOK_ALWAYS,
    ['%'] = TOK_ALWAYS,
    ['.'] = TOK_IN_KEY,
    ['/'] = TOK_IN_KEY,
    ['~'] = TOK_IN_KEY,
    [0x7F ... 0xFF] = TOK_ALWAYS,
};

/* The tokens of one call: n strings in one buffer, escaped for a key
 * (for_key) or only to be readable. */
typedef struct {
    Py_ssize_t n;
    unsigned char escape;       /* the TOKEN_ESCAPE classes escaped */
    char *buf;
    size_t len, cap;
    size_t *offs;               /* n offsets, then the n lengths ... */
    size_t *lens;               /* ... in the same allocation */
} tokenset;

/* Sized for n tokens as alkey makes them: reading them back costs no
 * reallocation.  Returns 0, or -1 with MemoryError set. */
static int
tokenset_init(tokenset *ts, Py_ssize_t n, int for_key)
{
    size_t count = (size_t)(n ? n : 1);

    memset(ts, 0, sizeof(*ts));
    ts->n = n;
    ts->escape = for_key ? (TOK_ALWAYS | TOK_IN_KEY) : TOK_ALWAYS;
    if (count > (size_t)PY_SSIZE_T_MAX / (2 * sizeof(size_t))
        || count > (size_t)PY_SSIZE_T_MAX / ALKEY_TOKEN_LEN - 3) {
        PyErr_NoMemory();
        return -1;
    }
    ts->offs = PyMem_Malloc(2 * sizeof(size_t) * count);
    /* The last token is reserved room for 3 bytes a byte. */
    ts->cap = (count + 2) * ALKEY_TOKEN_LEN;
    ts->buf = PyMem_RawMalloc(ts->cap);
    if (ts->offs == NULL || ts->buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    ts->lens = ts->offs + count;
    return 0;
}

static void
tokenset_free(tokenset *ts)
{
    PyMem_RawFree(ts->buf);
    PyMem_Free(ts->offs);
    memset(ts, 0, sizeof(*ts));
}

/* Makes room for extra more bytes.  Uses the raw allocator: may run
 * without the GIL.  Returns 0 or -1 (out of memory). */
static int
tokenset_reserve(tokenset *ts, size_t extra)
{
    size_t need;

    if (extra > SIZE_MAX - ts->len) {
        return -1;
    }
    need = ts->len + extra;
    if (need > ts->cap) {
        size_t cap = ts->cap ? ts->cap : 256;
        char *buf;
        while (cap < need) {
            if (cap > SIZE_MAX / 2) {
                return -1;
            }
            cap *= 2;
        }
        buf = PyMem_RawRealloc(ts->buf, cap);
        if (buf == NULL) {
            return -1;
        }
        ts->buf = buf;
        ts->cap = cap;
    }
    return 0;
}

/* Appends token i, with the bytes of the set's escape classes written as
 * %XX: one pass, room for the worst case reserved first.  Uses the raw
 * allocator: may run without the GIL.  Returns 0 or -1 (out of
 * memory). */
static int
tokenset_put(tokenset *ts, Py_ssize_t i, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    unsigned char escape = ts->escape, classes = 0;
    char *o;
    size_t k;

    if (n > SIZE_MAX / 3 || tokenset_reserve(ts, n * 3) < 0) {
        return -1;
    }
    ts->offs[i] = ts->len;
    o = ts->buf + ts->len;
    /* Tokens alkey makes (base64url) need no escape: find out without a
     * branch a byte, four at a time, then copy them whole. */
    for (k = 0; k + 4 <= n; k += 4) {
        classes |= TOKEN_ESCAPE[(unsigned char)s[k]]
                   | TOKEN_ESCAPE[(unsigned char)s[k + 1]]
                   | TOKEN_ESCAPE[(unsigned char)s[k + 2]]
                   | TOKEN_ESCAPE[(unsigned char)s[k + 3]];
    }
    for (; k < n; k++) {
        classes |= TOKEN_ESCAPE[(unsigned char)s[k]];
    }
    if (!(classes & escape)) {
        memcpy(o, s, n);
        o += n;
    }
    else {
        for (k = 0; k < n; k++) {
            unsigned char c = (unsigned char)s[k];

            if (!(TOKEN_ESCAPE[c] & escape)) {
                *o++ = (char)c;
            }
            else {
                *o++ = '%';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 0xF];
            }
        }
    }
    ts->len = (size_t)(o - ts->buf);
    ts->lens[i] = ts->len - ts->offs[i];
    return 0;
}

/* Fills every slot with a fresh random token that is stored nowhere, so the
 * key built from them is new: a cache miss, never a stale hit. */
static int
tokenset_fresh(tokenset *ts)
{
    Py_ssize_t i;
    char tok[ALKEY_TOKEN_LEN];

    ts->len = 0;
    for (i = 0; i < ts->n; i++) {
        if (alkey_random_token(tok) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (tokenset_put(ts, i, tok, ALKEY_TOKEN_LEN) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The native lookup                                                    */

/* What went wrong in a lookup, told with the GIL held afterwards. */
enum lookup_status {
    LOOKUP_OK = 0,
    LOOKUP_CONN,        /* the connection failed: ctx->err */
    LOOKUP_REPLY,       /* an error or malformed reply: message in reply */
    LOOKUP_NOMEM,
    LOOKUP_RANDOM,
};

typedef struct {
    enum lookup_status status;
    int err_no;
    char message[256];
    /* For stats(), counted once the GIL is back. */
    int round_trips;            /* pipelines whose replies were all read */
    Py_ssize_t created;         /* SET NX that stored our token */
    Py_ssize_t fresh;           /* ours, not stored, and nothing there */
} lookup_result;

static int
reply_is_string_array(const redisReply *r, size_t n)
{
    size_t i;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        int t = r->element[i]->type;
        if (t != REDIS_REPLY_STRING && t != REDIS_REPLY_NIL) {
            return 0;
        }
    }
    return 1;
}

static void
reply_problem(lookup_result *res, const redisReply *r, const char *what)
{
    res->status = LOOKUP_REPLY;
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(res->message, sizeof(res->message), "%s failed: %.200s",
                 what, r->str ? r->str : "");
    }
    else {
        snprintf(res->message, sizeof(res->message),
                 "%s gave an unexpected reply (type %d)", what, r->type);
    }
}

/* The arrays of a lookup of up to about 16 keys live on the stack: a heap
 * block that size costs glibc more than the rest of the lookup's own
 * work. */
#define LOOKUP_INLINE 3072

/* Looks up n tokens on one connection.  Runs WITHOUT the GIL: touches only
 * C buffers and the raw allocator.  On LOOKUP_OK, ts holds every token. */
static void
lookup(alkey_conn *conn, Py_ssize_t n, const char *const *keys,
       const size_t *keylens, long ttl, tokenset *ts,
       lookup_result *res)
{
    union {
        max_align_t align;
        char bytes[LOOKUP_INLINE];
    } inline_block;
    void *block = NULL;
    size_t block_size;
    char ttlbuf[32];
    const char **argv;
    size_t *argvlen;
    alkey_cmd *cmds;
    redisReply **replies = NULL;
    redisReply *first = NULL;
    char *fresh = NULL;
    Py_ssize_t i, m = 0, j;
    size_t nargs;

    res->status = LOOKUP_OK;
    if (n >= INT_MAX / 8 || (size_t)n >= SIZE_MAX / 256) {
        res->status = LOOKUP_NOMEM;
        return;
    }
    /* One block: n + 1 commands; room for MGET + n keys, then m SETs of 6
     * words and MGET + m keys; n + 1 replies.  (Each array's size keeps
     * the next one aligned.) */
    nargs = (size_t)n * 8 + 2;
    block_size = sizeof(alkey_cmd) * ((size_t)n + 1)
                 + (sizeof(char *) + sizeof(size_t)) * nargs
                 + sizeof(redisReply *) * ((size_t)n + 1);
    if (block_size <= sizeof(inline_block)) {
        cmds = (alkey_cmd *)inline_block.bytes;
    }
    else {
        cmds = block = PyMem_RawMalloc(block_size);
        if (block == NULL) {
            res->status = LOOKUP_NOMEM;
            goto done;
        }
    }
    argv = (const char **)(cmds + n + 1);
    argvlen = (size_t *)(argv + nargs);
    replies = (redisReply **)(argvlen + nargs);
    memset(replies, 0, sizeof(redisReply *) * ((size_t)n + 1));
    argv[0] = "MGET";
    argvlen[0] = 4;
    for (i = 0; i < n; i++) {
        argv[i + 1] = keys[i];
        argvlen[i + 1] = keylens[i];
    }
    cmds[0].argc = (int)n + 1;
    cmds[0].argv = argv;
    cmds[0].argvlen = argvlen;
    if (alkey_conn_run(conn, 1, cmds, &first, &res->err_no) < 0) {
        res->status = LOOKUP_CONN;
        goto done;
    }
    res->round_trips++;
    if (!reply_is_string_array(first, (size_t)n)) {
        reply_problem(res, first, "MGET");
        goto done;
    }
    for (i = 0; i < n; i++) {
        if (first->element[i]->type == REDIS_REPLY_NIL) {
            m++;
        }
    }
    if (m > 0) {
        /* Missing tokens: create them atomically, then read back whichever
         * token is there now. */
        size_t a = 0;
        redisReply *last;
        fresh = PyMem_RawMalloc((size_t)m * ALKEY_TOKEN_LEN);
        if (fresh == NULL) {
            res->status = LOOKUP_NOMEM;
            goto done;
        }
        snprintf(ttlbuf, sizeof(ttlbuf), "%ld", ttl);
        for (i = 0, j = 0; i < n; i++) {
            if (first->element[i]->type != REDIS_REPLY_NIL) {
                continue;
            }
            if (alkey_random_token(fresh + j * ALKEY_TOKEN_LEN) < 0) {
                res->status = LOOKUP_RANDOM;
                res->err_no = errno;
                goto done;
            }
            cmds[j].argv = argv + a;
            cmds[j].argvlen = argvlen + a;
            cmds[j].argc = 6;
            argv[a] = "SET"; argvlen[a++] = 3;
            argv[a] = keys[i]; argvlen[a++] = keylens[i];
            argv[a] = fresh + j * ALKEY_TOKEN_LEN;
            argvlen[a++] = ALKEY_TOKEN_LEN;
            argv[a] = "NX"; argvlen[a++] = 2;
            argv[a] = "EX"; argvlen[a++] = 2;
            argv[a] = ttlbuf; argvlen[a++] = strlen(ttlbuf);
            j++;
        }
        cmds[m].argv = argv + a;
        cmds[m].argvlen = argvlen + a;
        cmds[m].argc = (int)m + 1;
        argv[a] = "MGET"; argvlen[a++] = 4;
        for (i = 0; i < n; i++) {
            if (first->element[i]->type == REDIS_REPLY_NIL) {
                argv[a] = keys[i];
                argvlen[a++] = keylens[i];
            }
        }
        if (alkey_conn_run(conn, (int)m + 1, cmds, replies,
                           &res->err_no) < 0) {
            res->status = LOOKUP_CONN;
            goto done;
        }
        res->round_trips++;
        for (j = 0; j < m; j++) {
            int t = replies[j]->type;
            if (t != REDIS_REPLY_STATUS && t != REDIS_REPLY_NIL) {
                reply_problem(res, replies[j], "SET NX");
                goto done;
            }
            res->created += t == REDIS_REPLY_STATUS;
        }
        last = replies[m];
        if (!reply_is_string_array(last, (size_t)m)) {
            reply_problem(res, last, "MGET");
            goto done;
        }
        for (i = 0, j = 0; i < n; i++) {
            const redisReply *r = first->element[i];
            if (r->type == REDIS_REPLY_NIL) {
                r = last->element[j];
                if (r->type == REDIS_REPLY_NIL) {
                    /* Gone already (evicted): ours, stored or not, is
                     * new, so the key is a miss either way. */
                    if (tokenset_put(ts, i, fresh + j * ALKEY_TOKEN_LEN,
                                     ALKEY_TOKEN_LEN) < 0) {
                        res->status = LOOKUP_NOMEM;
                        goto done;
                    }
                    res->fresh += replies[j]->type != REDIS_REPLY_STATUS;
                    j++;
                    continue;
                }
                j++;
            }
            if (tokenset_put(ts, i, r->str, r->len) < 0) {
                res->status = LOOKUP_NOMEM;
                goto done;
            }
        }
    }
    else {
        for (i = 0; i < n; i++) {
            const redisReply *r = first->element[i];
            if (tokenset_put(ts, i, r->str, r->len) < 0) {
                res->status = LOOKUP_NOMEM;
                goto done;
            }
        }
    }

done:
    if (first != NULL) {
        freeReplyObject(first);
    }
    if (replies != NULL) {
        for (i = 0; i <= m; i++) {
            if (replies[i] != NULL) {
                freeReplyObject(replies[i]);
            }
        }
    }
    PyMem_RawFree(fresh);
    PyMem_RawFree(block);
}

/* Looks up the tokens of n keys through a native client, and counts its
 * round trips and (on success) the tokens found, created and fresh.  GIL
 * held on entry and exit.  Returns 0, or -1 with an alkey.Error (or
 * MemoryError / OSError) set. */
static int
native_tokens(alkey_client *client, alkey_state *st, Py_ssize_t n,
              const char *const *keys, const size_t *keylens, long ttl,
              tokenset *ts)
{
    alkey_conn *conn;
    lookup_result res;

    conn = alkey_client_acquire(client, st);
    if (conn == NULL) {
        return -1;
    }
    memset(&res, 0, sizeof(res));
    Py_BEGIN_ALLOW_THREADS
    lookup(conn, n, keys, keylens, ttl, ts, &res);
    Py_END_ALLOW_THREADS
    st->stats.redis_round_trips += (unsigned long long)res.round_trips;
    switch (res.status) {
    case LOOKUP_OK:
        alkey_client_release(client, conn, 0);
        st->stats.tokens_found +=
            (unsigned long long)(n - res.created - res.fresh);
        st->stats.tokens_created += (unsigned long long)res.created;
        st->stats.tokens_fresh += (unsigned long long)res.fresh;
        return 0;
    case LOOKUP_CONN:
        alkey_conn_error(st, client, conn->ctx, res.err_no);
        alkey_client_release(client, conn, 1);
        return -1;
    case LOOKUP_REPLY:
        alkey_client_release(client, conn, 0);
        st->stats.redis_errors++;
        PyErr_Format(st->ReplyError, "token lookup: %s", res.message);
        return -1;
    case LOOKUP_RANDOM:
        alkey_client_release(client, conn, 0);
        errno = res.err_no;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    default:
        /* The pipeline may be half read: do not reuse the connection. */
        alkey_client_release(client, conn, 1);
        PyErr_NoMemory();
        return -1;
    }
}

/* Looks up tokens through a Python callable (the redis-py path): it gets a
 * list of token keys and returns a sequence of as many str or bytes.  A
 * call counts as one round trip, or as the error it raised. */
static int
callable_tokens(alkey_state *st, PyObject *source, Py_ssize_t n,
                const char *const *keys, const size_t *keylens, tokenset *ts)
{
    PyObject *list = NULL, *result = NULL, *seq = NULL;
    Py_ssize_t i;
    int rc = -1;

    list = PyList_New(n);
    if (list == NULL) {
        goto done;
    }
    for (i = 0; i < n; i++) {
        PyObject *k = PyUnicode_DecodeUTF8(keys[i], (Py_ssize_t)keylens[i],
                                           "strict");
        if (k == NULL) {
            goto done;
        }
        PyList_SET_ITEM(list, i, k);
    }
    result = PyObject_CallOneArg(source, list);
    if (result == NULL) {
        alkey_stats_count_failure(st, PyErr_Occurred());
        goto done;
    }
    st->stats.redis_round_trips++;
    seq = PySequence_Fast(result, "a token source must return a sequence");
    if (seq == NULL) {
        goto done;
    }
    if (PySequence_Fast_GET_SIZE(seq) != n) {
        PyErr_Format(PyExc_ValueError,
                     "the token source returned %zd tokens for %zd keys",
                     PySequence_Fast_GET_SIZE(seq), n);
        goto done;
    }
    for (i = 0; i < n; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(seq, i);
        const char *s;
        Py_ssize_t len;
        if (PyBytes_Check(t)) {
            s = PyBytes_AS_STRING(t);
            len = PyBytes_GET_SIZE(t);
        }
        else if (PyUnicode_Check(t)) {
            s = PyUnicode_AsUTF8AndSize(t, &len);
            if (s == NULL) {
                goto done;
            }
        }
        else {
            PyErr_Format(PyExc_TypeError,
                         "a token must be str or bytes, not %.100s",
                         Py_TYPE(t)->tp_name);
            goto done;
        }
        if (tokenset_put(ts, i, s, (size_t)len) < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    rc = 0;
done:
    Py_XDECREF(seq);
    Py_XDECREF(result);
    Py_XDECREF(list);
    return rc;
}

/* Tells the error handler about a lookup failure that the caller recovers
 * from, and clears it.  Returns 0, or -1 when the error must propagate
 * (not an Exception, or out of memory). */
static int
absorb_failure(alkey_state *st)
{
    PyObject *type, *value, *tb, *r;

    if (!PyErr_ExceptionMatches(PyExc_Exception) ||
        PyErr_ExceptionMatches(PyExc_MemoryError)) {
        return -1;
    }
#if PY_VERSION_HEX >= 0x030C0000
    type = NULL;
    tb = NULL;
    value = PyErr_GetRaisedException();
#else
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL && PyException_SetTraceback(value, tb) < 0) {
        PyErr_Clear();
    }
#endif
    if (st->error_handler != NULL && value != NULL) {
        /* Held: the handler may replace itself through _set_hooks(). */
        PyObject *handler = st->error_handler;
        Py_INCREF(handler);
        r = PyObject_CallOneArg(handler, value);
        if (r == NULL) {
            PyErr_WriteUnraisable(handler);
        }
        Py_XDECREF(r);
        Py_DECREF(handler);
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return 0;
}

/* Reads a ttl argument (borrowed): a positive int of seconds.  Returns 0,
 * or -1 with TypeError / ValueError set. */
int
alkey_ttl_arg(PyObject *obj, long *ttl)
{
    if (PyBool_Check(obj) || !PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "ttl must be an int, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    *ttl = PyLong_AsLong(obj);
    if (*ttl == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (*ttl < 1) {
        PyErr_Format(PyExc_ValueError, "ttl must be 1 second or more, got %ld",
                     *ttl);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The token keys of a cache key                                        */

#define MAX_PARTS ALKEY_TOKEN_MAX_PARTS

/* A keyset this small (a call of about 16 identifiers) lives in the
 * keyset itself, on the caller's stack: allocating it would cost as much
 * as building it. */
#define KEYSET_INLINE 4096

/* The Redis keys ("<namespace>:<identifier>") that one cache_key call
 * reads, and which of them make each slot's token.  Every slot has a key
 * of its own; an epoch key is there once however many slots fold it in.
 * A call names few tables, so an epoch is looked for among the distinct
 * epochs seen so far.  One block holds every array, the slots' tokens for
 * alkey_keyplan_finish() and the keys' text: the inline one, or heap
 * (PyMem), which the keyset owns.  Built with the GIL, read without it. */
typedef struct {
    void *heap;
    char *buf;                  /* the keys' text */
    size_t len;
    const char **keys;          /* m keys into buf */
    size_t *lens;
    Py_ssize_t m;
    Py_ssize_t *epochs;         /* indices in keys of the distinct epochs */
    Py_ssize_t nepochs;
    Py_ssize_t *parts;          /* slot i: parts[i * MAX_PARTS + j] ... */
    int *nparts;                /* ... for j < nparts[i] */
    alkey_slot_token *tokens;   /* slot i's token, once the keys are read */
    union {
        max_align_t align;
        char bytes[KEYSET_INLINE];
    } inline_block;
} keyset;

/* Everything but the inline block, which is never read before written. */
static void
keyset_init(keyset *ks)
{
    memset(ks, 0, offsetof(keyset, inline_block));
}

static void
keyset_free(keyset *ks)
{
    PyMem_Free(ks->heap);
    keyset_init(ks);
}

static int
size_add(size_t *total, size_t more)
{
    if (more > SIZE_MAX - *total) {
        return -1;
    }
    *total += more;
    return 0;
}

/* Writes "<ns>:<a><b>" after the keys and returns its index: the index of
 * an equal epoch already there when epoch is set (the text written is then
 * dropped).  The buffers were sized for every key, so this cannot fail. */
static Py_ssize_t
keyset_add(keyset *ks, const char *ns, size_t nslen, const char *a,
           size_t alen, const char *b, size_t blen, int epoch)
{
    char *p = ks->buf + ks->len;
    size_t n = nslen + 1 + alen + blen;
    Py_ssize_t e, idx;

    memcpy(p, ns, nslen);
    p[nslen] = ':';
    memcpy(p + nslen + 1, a, alen);
    if (blen > 0) {
        memcpy(p + nslen + 1 + alen, b, blen);
    }
    if (epoch) {
        for (e = ks->nepochs - 1; e >= 0; e--) {
            idx = ks->epochs[e];
            if (ks->lens[idx] == n && memcmp(ks->keys[idx], p, n) == 0) {
                return idx;
            }
        }
    }
    idx = ks->m++;
    ks->keys[idx] = p;
    ks->lens[idx] = n;
    ks->len += n;
    if (epoch) {
        ks->epochs[ks->nepochs++] = idx;
    }
    return idx;
}

/* Fills ks with the token keys of plan's slots (both borrowed): for an
 * instance its own key, its table's epoch and the global epoch; for a
 * table its own and the global epoch; for the global token or an epoch
 * its own only.  Returns 0, or -1 with MemoryError set. */
static int
keyset_build(keyset *ks, const alkey_keyplan *plan, const char *ns,
             size_t nslen)
{
    size_t n = plan->nslots, total = 0, i, table_len = 0;
    const char *table = NULL;
    Py_ssize_t table_epoch = -1, global_epoch = -1;
    char *p;

    keyset_init(ks);
    if (n > (size_t)PY_SSIZE_T_MAX / 256) {
        PyErr_NoMemory();
        return -1;
    }
    /* Room for every key as if none were shared.  An epoch of a table is
     * no longer than the instance identifier it comes from. */
    for (i = 0; i < n; i++) {
        const alkey_slot *sl = &plan->slots[i];
        size_t own = nslen + 1 + sl->oid_len;
        size_t global = nslen + 1 + ALKEY_GLOBAL_EPOCH_LEN;

        if (size_add(&total, own) < 0
            || (sl->kind == ALKEY_OID_INSTANCE && size_add(&total, own) < 0)
            || ((sl->kind == ALKEY_OID_INSTANCE
                 || sl->kind == ALKEY_OID_TABLE)
                && size_add(&total, global) < 0)) {
            PyErr_NoMemory();
            return -1;
        }
    }
    /* The arrays widest first, so that each one is aligned; the text
     * last. */
    {
        size_t arrays = sizeof(alkey_slot_token) * n
                        + (sizeof(char *) + sizeof(size_t)
                           + 2 * sizeof(Py_ssize_t)) * MAX_PARTS * n
                        + sizeof(int) * n;

        if (size_add(&total, arrays) < 0 || total > (size_t)PY_SSIZE_T_MAX) {
            PyErr_NoMemory();
            return -1;
        }
    }
    if (total <= KEYSET_INLINE) {
        p = ks->inline_block.bytes;
    }
    else {
        p = ks->heap = PyMem_Malloc(total);
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    ks->tokens = (alkey_slot_token *)p;
    p += sizeof(alkey_slot_token) * n;
    ks->keys = (const char **)p;
    p += sizeof(char *) * MAX_PARTS * n;
    ks->lens = (size_t *)p;
    p += sizeof(size_t) * MAX_PARTS * n;
    ks->epochs = (Py_ssize_t *)p;
    p += sizeof(Py_ssize_t) * MAX_PARTS * n;
    ks->parts = (Py_ssize_t *)p;
    p += sizeof(Py_ssize_t) * MAX_PARTS * n;
    ks->nparts = (int *)p;
    p += sizeof(int) * n;
    ks->buf = p;
    /* The epochs of the table of the last instance, and the global one,
     * are reused without a search: a call mostly names rows of one
     * table. */
    for (i = 0; i < n; i++) {
        const alkey_slot *sl = &plan->slots[i];
        const char *oid = plan->buf + sl->oid_off;
        Py_ssize_t *parts = ks->parts + i * MAX_PARTS;
        int k = 0;

        parts[k++] = keyset_add(ks, ns, nslen, oid, sl->oid_len, NULL, 0,
                                sl->kind == ALKEY_OID_EPOCH);
        if (sl->kind == ALKEY_OID_INSTANCE) {
            size_t tlen = alkey_oid_table_len(oid, sl->oid_len);

            if (table == NULL || tlen != table_len
                || memcmp(oid, table, tlen) != 0) {
                table = oid;
                table_len = tlen;
                table_epoch = keyset_add(ks, ns, nslen, oid, tlen, "#!", 2,
                                         1);
            }
            parts[k++] = table_epoch;
        }
        if (sl->kind == ALKEY_OID_INSTANCE || sl->kind == ALKEY_OID_TABLE) {
            if (global_epoch < 0) {
                global_epoch = keyset_add(ks, ns, nslen, ALKEY_GLOBAL_EPOCH,
                                          ALKEY_GLOBAL_EPOCH_LEN, NULL, 0, 1);
            }
            parts[k++] = global_epoch;
        }
        ks->nparts[i] = k;
    }
    assert(ks->buf + ks->len <= (char *)ks->tokens + total);
    return 0;
}

/* Points each slot's token at its parts in ts, which holds the tokens of
 * ks's keys (escaped for a key), and returns the slots' tokens. */
static const alkey_slot_token *
keyset_tokens(keyset *ks, Py_ssize_t nslots, const tokenset *ts)
{
    Py_ssize_t i;
    int j;

    for (i = 0; i < nslots; i++) {
        alkey_slot_token *t = &ks->tokens[i];
        const Py_ssize_t *parts = ks->parts + i * MAX_PARTS;

        t->n = ks->nparts[i];
        for (j = 0; j < t->n; j++) {
            t->part[j] = ts->buf + ts->offs[parts[j]];
            t->len[j] = ts->lens[parts[j]];
        }
    }
    return ks->tokens;
}

const char alkey_cache_key_doc[] = PyDoc_STR(
"cache_key(source, args, namespace, ttl, hashed) -> str\n\n"
"The cache key of the sequence ``args``: each identifier in it (or\n"
"object the resolver maps to one) contributes its token, looked up\n"
"through ``source`` under ``namespace:<identifier>`` (missing tokens are\n"
"created with expiry ``ttl`` seconds).  An instance also folds in the\n"
"epoch of its table (``alkey:<table>#!``) and the global epoch\n"
"(``alkey:*#!``), a table the global epoch, joined by \".\": a bulk write\n"
"replaces an epoch and so changes every such key at once.  All of a\n"
"call's token keys, each epoch once, are read together.  ``source`` is a\n"
"Client (one round trip when every token exists, two otherwise), a\n"
"callable taking a list of token keys and returning their tokens, or None\n"
"(fresh tokens).  When the lookup fails the error handler is told and\n"
"fresh, unstored tokens are used: the key is new, a miss, never stale.\n"
"``hashed`` gives the 64-character SHA-256 hex form.");

/* Does any key of ks name an identifier whose invalidation is pending?
 * (Each key is "<namespace>:<identifier>".)  Returns 1 or 0, or -1 with an
 * exception set.  Costs nothing while nothing is pending. */
static int
names_pending(alkey_state *st, const keyset *ks, size_t nslen)
{
    Py_ssize_t i;

    if (st->pending == NULL || PySet_GET_SIZE(st->pending) == 0) {
        return 0;
    }
    for (i = 0; i < ks->m; i++) {
        PyObject *oid;
        int found;
        if (ks->lens[i] <= nslen) {
            continue;
        }
        oid = PyUnicode_DecodeUTF8(ks->keys[i] + nslen + 1,
                                   (Py_ssize_t)(ks->lens[i] - nslen - 1),
                                   "strict");
        if (oid == NULL) {
            return -1;
        }
        found = PySet_Contains(st->pending, oid);
        Py_DECREF(oid);
        if (found != 0) {
            return found;
        }
    }
    return 0;
}

PyObject *
alkey_py_cache_key(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    alkey_state *st = alkey_get_state(module);
    alkey_keyplan plan;
    keyset ks;
    tokenset ts;
    PyObject *source, *result = NULL;
    const char *ns;
    Py_ssize_t nslen, n;
    long ttl;
    int hashed, rc;

    alkey_keyplan_init(&plan);
    keyset_init(&ks);
    memset(&ts, 0, sizeof(ts));
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError,
                     "cache_key() takes 5 arguments (source, args, "
                     "namespace, ttl, hashed), %zd given", nargs);
        goto done;
    }
    source = args[0];
    if (!PyUnicode_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "namespace must be a str");
        goto done;
    }
    ns = PyUnicode_AsUTF8AndSize(args[2], &nslen);
    if (ns == NULL || alkey_ttl_arg(args[3], &ttl) < 0) {
        goto done;
    }
    hashed = PyObject_IsTrue(args[4]);
    if (hashed < 0) {
        goto done;
    }
    if (alkey_keyplan_add_args(&plan, st, args[1]) < 0) {
        goto done;
    }
    n = (Py_ssize_t)plan.nslots;
    if (n == 0) {
        result = alkey_keyplan_finish(&plan, NULL, hashed);
        goto done;
    }
    if (keyset_build(&ks, &plan, ns, (size_t)nslen) < 0
        || tokenset_init(&ts, ks.m, 1) < 0) {
        goto done;
    }
    rc = names_pending(st, &ks, (size_t)nslen);
    if (rc < 0) {
        goto done;
    }
    if (source == Py_None || rc == 1) {
        if (tokenset_fresh(&ts) < 0) {
            goto done;
        }
        st->stats.tokens_fresh += (unsigned long long)ks.m;
    }
    else {
        if (PyObject_TypeCheck(source, st->ClientType)) {
            rc = native_tokens((alkey_client *)source, st, ks.m, ks.keys,
                               ks.lens, ttl, &ts);
        }
        else if (PyCallable_Check(source)) {
            rc = callable_tokens(st, source, ks.m, ks.keys, ks.lens, &ts);
        }
        else {
            PyErr_Format(PyExc_TypeError,
                         "source must be an alkey Client, a callable or "
                         "None, not %.100s", Py_TYPE(source)->tp_name);
            goto done;
        }
        if (rc < 0) {
            if (absorb_failure(st) < 0 || tokenset_fresh(&ts) < 0) {
                goto done;
            }
            st->stats.tokens_fresh += (unsigned long long)ks.m;
        }
    }
    st->stats.tokens_looked_up += (unsigned long long)ks.m;
    result = alkey_keyplan_finish(&plan, keyset_tokens(&ks, n, &ts), hashed);
done:
    tokenset_free(&ts);
    keyset_free(&ks);
    alkey_keyplan_free(&plan);
    return result;
}

const char alkey_fetch_tokens_doc[] = PyDoc_STR(
"fetch_tokens(client, keys, ttl) -> list[str]\n\n"
"The tokens stored under the token keys ``keys`` (a list of str), each\n"
"missing one created atomically (SET NX) with expiry ``ttl`` seconds.\n"
"One round trip when all exist, two otherwise.  Raises alkey.Error when\n"
"Redis fails.");

PyObject *
alkey_py_fetch_tokens(PyObject *module, PyObject *const *args,
                      Py_ssize_t nargs)
{
    alkey_state *st = alkey_get_state(module);
    PyObject *seq = NULL, *result = NULL;
    const char **keys = NULL;
    size_t *keylens = NULL;
    tokenset ts;
    Py_ssize_t i, n;
    long ttl;

    memset(&ts, 0, sizeof(ts));
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "fetch_tokens() takes 3 arguments (client, keys, ttl), "
                     "%zd given", nargs);
        return NULL;
    }
    if (!PyObject_TypeCheck(args[0], st->ClientType)) {
        PyErr_Format(PyExc_TypeError,
                     "fetch_tokens() needs an alkey Client, not %.100s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    if (alkey_ttl_arg(args[2], &ttl) < 0) {
        return NULL;
    }
    /* A tuple of our own: the key strings must outlive the GIL releases,
     * whatever other threads do to the caller's list. */
    seq = PySequence_Tuple(args[1]);
    if (seq == NULL) {
        return NULL;
    }
    n = PyTuple_GET_SIZE(seq);
    if (tokenset_init(&ts, n, 0) < 0) {
        goto done;
    }
    keys = PyMem_Malloc(sizeof(char *) * (size_t)(n ? n : 1));
    keylens = PyMem_Malloc(sizeof(size_t) * (size_t)(n ? n : 1));
    if (keys == NULL || keylens == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < n; i++) {
        PyObject *k = PyTuple_GET_ITEM(seq, i);
        Py_ssize_t len;
        if (!PyUnicode_Check(k)) {
            PyErr_Format(PyExc_TypeError, "token keys must be str, not %.100s",
                         Py_TYPE(k)->tp_name);
            goto done;
        }
        keys[i] = PyUnicode_AsUTF8AndSize(k, &len);
        if (keys[i] == NULL) {
            goto done;
        }
        keylens[i] = (size_t)len;
    }
    if (n > 0 && native_tokens((alkey_client *)args[0], st, n, keys, keylens,
                               ttl, &ts) < 0) {
        goto done;
    }
    st->stats.tokens_looked_up += (unsigned long long)n;
    result = PyList_New(n);
    if (result == NULL) {
        goto done;
    }
    for (i = 0; i < n; i++) {
        PyObject *t = PyUnicode_DecodeASCII(ts.buf + ts.offs[i],
                                            (Py_ssize_t)ts.lens[i], "strict");
        if (t == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, t);
    }
done:
    PyMem_Free(keys);
    PyMem_Free(keylens);
    tokenset_free(&ts);
    Py_DECREF(seq);
    return result;
}

const char alkey_random_token_doc[] = PyDoc_STR(
"random_token() -> str\n\nA new token: 128 random bits as 22 base64url "
"characters.");

PyObject *
alkey_py_random_token(PyObject *module, PyObject *Py_UNUSED(unused))
{
    char tok[ALKEY_TOKEN_LEN];

    (void)module;
    if (alkey_random_token(tok) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyUnicode_DecodeASCII(tok, ALKEY_TOKEN_LEN, "strict");
}
