/* alkey._native.Client: a thread-safe, fork-safe pool of hiredis
 * connections with redis-py's method names.
 *
 * The pool is guarded by the GIL: connections are taken from and given back
 * to the idle list only while it is held.  A checked-out connection belongs
 * to one thread, which drops the GIL around the network I/O on it. */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "structmember.h"

#ifdef ALKEY_HAVE_HIREDIS_SSL
#include <arpa/inet.h>
#include <hiredis_ssl.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#endif

#define CLIENT_DEFAULT_TIMEOUT_US 500000
#define CLIENT_DEFAULT_CONNECT_TIMEOUT_US 250000

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */

static char *
dup_cstr(const char *s, Py_ssize_t n)
{
    char *out = PyMem_Malloc((size_t)n + 1);
    if (out == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(out, s, (size_t)n);
    out[n] = '\0';
    return out;
}

/* Copies an optional str argument into a PyMem string (NULL for None). */
static int
opt_cstr(PyObject *obj, const char *what, char **out)
{
    Py_ssize_t n;
    const char *s;

    *out = NULL;
    if (obj == NULL || obj == Py_None) {
        return 0;
    }
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str or None, not %.100s",
                     what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    s = PyUnicode_AsUTF8AndSize(obj, &n);
    if (s == NULL) {
        return -1;
    }
    if ((Py_ssize_t)strlen(s) != n) {
        PyErr_Format(PyExc_ValueError, "%s must not contain NUL characters",
                     what);
        return -1;
    }
    *out = dup_cstr(s, n);
    return *out == NULL ? -1 : 0;
}

/* Reads a timeout in seconds (int or float, > 0) into a timeval. */
static int
timeout_arg(PyObject *obj, const char *what, long default_us,
            struct timeval *tv)
{
    double secs;
    long long us;

    if (obj == NULL || obj == Py_None) {
        tv->tv_sec = default_us / 1000000;
        tv->tv_usec = default_us % 1000000;
        return 0;
    }
    if (PyBool_Check(obj) || !(PyFloat_Check(obj) || PyLong_Check(obj))) {
        PyErr_Format(PyExc_TypeError,
                     "%s must be a number of seconds, not %.100s",
                     what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    secs = PyFloat_AsDouble(obj);
    if (secs == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (!(secs > 0.0) || secs > 86400.0 * 365) {
        PyErr_Format(PyExc_ValueError,
                     "%s must be a number of seconds above 0, got %R",
                     what, obj);
        return -1;
    }
    us = (long long)(secs * 1e6 + 0.5);
    if (us < 1) {
        us = 1;
    }
    tv->tv_sec = (time_t)(us / 1000000);
    tv->tv_usec = (suseconds_t)(us % 1000000);
    return 0;
}

static double
tv_seconds(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static void
conn_close(alkey_conn *conn)
{
    if (conn->ctx != NULL) {
        redisFree(conn->ctx);
    }
    PyMem_RawFree(conn);
}

/* ------------------------------------------------------------------ */
/* Errors                                                               */

static void
describe_address(alkey_client *client, char *buf, size_t size)
{
    if (client->path != NULL) {
        snprintf(buf, size, "unix:%s", client->path);
    }
    else {
        snprintf(buf, size, "%s:%d", client->host, client->port);
    }
}

PyObject *
alkey_conn_error(alkey_state *st, alkey_client *client,
                 const redisContext *ctx, int err_no)
{
    char addr[300];
    int timed_out = 0;

    describe_address(client, addr, sizeof(addr));
    if (ctx == NULL) {
        st->stats.redis_errors++;
        PyErr_Format(st->ConnectionError,
                     "cannot connect to Redis at %s: out of memory", addr);
        return NULL;
    }
#ifdef REDIS_ERR_TIMEOUT
    if (ctx->err == REDIS_ERR_TIMEOUT) {
        timed_out = 1;
    }
#endif
    if (ctx->err == REDIS_ERR_IO &&
        (err_no == EAGAIN || err_no == EWOULDBLOCK || err_no == ETIMEDOUT ||
         err_no == EINPROGRESS)) {
        timed_out = 1;
    }
    if (timed_out) {
        /* PyUnicode_FromFormat has no %g: format the numbers here. */
        char limits[96];
        st->stats.redis_timeouts++;
        snprintf(limits, sizeof(limits),
                 "socket_timeout=%.3gs, socket_connect_timeout=%.3gs",
                 tv_seconds(&client->timeout),
                 tv_seconds(&client->connect_timeout));
        PyErr_Format(st->TimeoutError,
                     "Redis at %s did not answer within the timeout (%s)",
                     addr, limits);
    }
    else if (ctx->err == REDIS_ERR_EOF) {
        st->stats.redis_errors++;
        PyErr_Format(st->ConnectionError,
                     "Redis at %s closed the connection", addr);
    }
    else {
        st->stats.redis_errors++;
        PyErr_Format(st->ConnectionError, "Redis at %s: %s", addr,
                     ctx->errstr[0] ? ctx->errstr : "connection error");
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Connections (no GIL)                                                 */

int
alkey_conn_run(alkey_conn *conn, int ncmds, const alkey_cmd *cmds,
               redisReply **replies, int *err_no)
{
    redisContext *ctx = conn->ctx;
    int i;

    for (i = 0; i < ncmds; i++) {
        replies[i] = NULL;
    }
    for (i = 0; i < ncmds; i++) {
        if (redisAppendCommandArgv(ctx, cmds[i].argc, cmds[i].argv,
                                   cmds[i].argvlen) != REDIS_OK) {
            goto error;
        }
    }
    for (i = 0; i < ncmds; i++) {
        void *reply = NULL;
        errno = 0;
        if (redisGetReply(ctx, &reply) != REDIS_OK || reply == NULL) {
            goto error;
        }
        replies[i] = reply;
    }
    return 0;

error:
    *err_no = errno;
    if (ctx->err == 0) {
        /* Only out of memory leaves no context error. */
        ctx->err = REDIS_ERR_OOM;
        snprintf(ctx->errstr, sizeof(ctx->errstr), "out of memory");
    }
    for (i = 0; i < ncmds; i++) {
        if (replies[i] != NULL) {
            freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
    }
    return -1;
}

/* Runs one handshake command; a NULL reply means a connection failure and
 * an error reply is returned for the caller to report. */
static redisReply *
handshake(redisContext *ctx, int argc, const char **argv, int *err_no)
{
    redisReply *reply;

    errno = 0;
    reply = redisCommandArgv(ctx, argc, argv, NULL);
    if (reply == NULL) {
        *err_no = errno;
    }
    return reply;
}

/* What opening a connection produced, for reporting with the GIL. */
typedef struct {
    redisContext *ctx;      /* set on a connection failure */
    int err_no;
    redisReply *refusal;    /* an error reply to AUTH or SELECT */
    const char *step;       /* "AUTH" or "SELECT" */
    int round_trips;        /* AUTH and SELECT answered, for stats() */
} open_failure;

/* Opens, configures and authenticates a connection.  Called without the
 * GIL; reads only the client's immutable configuration.  Returns the new
 * connection, or NULL with *fail describing what went wrong. */
static alkey_conn *
conn_open(alkey_client *client, open_failure *fail)
{
    alkey_conn *conn;
    redisContext *ctx;
    redisReply *reply;
    char dbbuf[32];
    int flags;

    memset(fail, 0, sizeof(*fail));
    errno = 0;
    if (client->path != NULL) {
        ctx = redisConnectUnixWithTimeout(client->path,
                                          client->connect_timeout);
    }
    else {
        ctx = redisConnectWithTimeout(client->host, client->port,
                                      client->connect_timeout);
    }
    if (ctx == NULL || ctx->err) {
        fail->err_no = errno;
        fail->ctx = ctx;
        return NULL;
    }
    /* hiredis does not open its sockets close-on-exec. */
    flags = fcntl(ctx->fd, F_GETFD);
    if (flags != -1) {
        (void)fcntl(ctx->fd, F_SETFD, flags | FD_CLOEXEC);
    }
    if (redisSetTimeout(ctx, client->timeout) != REDIS_OK) {
        fail->err_no = errno;
        fail->ctx = ctx;
        return NULL;
    }
    if (client->path == NULL) {
        (void)redisEnableKeepAlive(ctx);
    }
#ifdef ALKEY_HAVE_HIREDIS_SSL
    if (client->ssl) {
        /* Our own SSL object, so that the server's certificate is checked
         * against the host name (or IP address), not only against the CA:
         * hiredis's own context only sets SNI. */
        SSL *ssl = SSL_new((SSL_CTX *)client->ssl_ctx);
        unsigned char addr[sizeof(struct in6_addr)];
        int ok;
        if (ssl == NULL) {
            fail->err_no = ENOMEM;
            redisFree(ctx);
            return NULL;
        }
        if (inet_pton(AF_INET, client->host, addr) == 1 ||
            inet_pton(AF_INET6, client->host, addr) == 1) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
                                               client->host);
        }
        else {
            ok = SSL_set_tlsext_host_name(ssl, client->host) &&
                 SSL_set1_host(ssl, client->host);
        }
        if (!ok || redisInitiateSSL(ctx, ssl) != REDIS_OK) {
            /* hiredis owns the SSL object only once the handshake worked. */
            SSL_free(ssl);
            fail->err_no = errno;
            if (!ctx->err) {
                ctx->err = REDIS_ERR_OTHER;
                snprintf(ctx->errstr, sizeof(ctx->errstr),
                         "cannot set up TLS for this host");
            }
            fail->ctx = ctx;
            return NULL;
        }
    }
#endif
    if (client->password != NULL) {
        const char *argv[3];
        int argc = 0;
        argv[argc++] = "AUTH";
        if (client->username != NULL) {
            argv[argc++] = client->username;
        }
        argv[argc++] = client->password;
        reply = handshake(ctx, argc, argv, &fail->err_no);
        if (reply == NULL) {
            fail->ctx = ctx;
            return NULL;
        }
        fail->round_trips++;
        if (reply->type == REDIS_REPLY_ERROR) {
            fail->refusal = reply;
            fail->step = "AUTH";
            redisFree(ctx);
            return NULL;
        }
        freeReplyObject(reply);
    }
    if (client->db != 0) {
        const char *argv[2] = {"SELECT", dbbuf};
        snprintf(dbbuf, sizeof(dbbuf), "%ld", client->db);
        reply = handshake(ctx, 2, argv, &fail->err_no);
        if (reply == NULL) {
            fail->ctx = ctx;
            return NULL;
        }
        fail->round_trips++;
        if (reply->type == REDIS_REPLY_ERROR) {
            fail->refusal = reply;
            fail->step = "SELECT";
            redisFree(ctx);
            return NULL;
        }
        freeReplyObject(reply);
    }
    conn = PyMem_RawMalloc(sizeof(*conn));
    if (conn == NULL) {
        redisFree(ctx);
        fail->err_no = ENOMEM;
        return NULL;
    }
    conn->ctx = ctx;
    conn->pid = getpid();
    conn->next = NULL;
    return conn;
}

/* Is an idle connection unusable?  A readable idle socket means the server
 * closed it (restart, idle timeout) or sent something unasked for. */
static int
conn_stale(alkey_conn *conn)
{
    struct pollfd pfd;
    int rc;

    if (conn->ctx->err) {
        return 1;
    }
    pfd.fd = conn->ctx->fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    do {
        rc = poll(&pfd, 1, 0);
    } while (rc < 0 && errno == EINTR);
    return rc != 0;
}

/* ------------------------------------------------------------------ */
/* The pool (GIL held)                                                  */

/* Forgets connections inherited from the parent after a fork(): the child
 * must never read or write the parent's sockets.  Closing our copy of a
 * descriptor does not affect the parent's. */
static void
pool_after_fork(alkey_client *client)
{
    alkey_conn *conn = client->idle;

    while (conn != NULL) {
        alkey_conn *next = conn->next;
        conn_close(conn);
        conn = next;
    }
    client->idle = NULL;
    client->nopen = 0;
    client->pid = getpid();
}

static void
pool_clear(alkey_client *client)
{
    alkey_conn *conn = client->idle;

    while (conn != NULL) {
        alkey_conn *next = conn->next;
        conn_close(conn);
        client->nopen--;
        conn = next;
    }
    client->idle = NULL;
}

static PyObject *
report_open_failure(alkey_state *st, alkey_client *client, open_failure *fail)
{
    char addr[300];

    describe_address(client, addr, sizeof(addr));
    if (fail->refusal != NULL) {
        PyObject *exc = st->ReplyError;
        const char *msg = fail->refusal->str ? fail->refusal->str : "";
        if (strcmp(fail->step, "AUTH") == 0) {
            exc = st->AuthenticationError;
        }
        st->stats.redis_errors++;
        PyErr_Format(exc, "Redis at %s refused %s: %s", addr, fail->step,
                     msg);
        freeReplyObject(fail->refusal);
        return NULL;
    }
    if (fail->ctx == NULL) {
        if (fail->err_no == ENOMEM) {
            return PyErr_NoMemory();
        }
        return alkey_conn_error(st, client, NULL, fail->err_no);
    }
    alkey_conn_error(st, client, fail->ctx, fail->err_no);
    redisFree(fail->ctx);
    return NULL;
}

alkey_conn *
alkey_client_acquire(alkey_client *client, alkey_state *st)
{
    alkey_conn *conn;
    open_failure fail;
    struct timespec start, now;
    int waited = 0;

    if (client->host == NULL && client->path == NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "this Client was never initialised (call Client())");
        return NULL;
    }
    if (client->pid != getpid()) {
        pool_after_fork(client);
    }
    for (;;) {
        while (client->idle != NULL) {
            conn = client->idle;
            client->idle = conn->next;
            conn->next = NULL;
            if (!conn_stale(conn)) {
                return conn;
            }
            conn_close(conn);
            client->nopen--;
        }
        if (client->max_connections == 0 ||
            client->nopen < client->max_connections) {
            break;
        }
        /* Every connection is checked out: wait for one to come back, for
         * at most the socket timeout, letting other threads run. */
        if (!waited) {
            clock_gettime(CLOCK_MONOTONIC, &start);
            waited = 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - start.tv_sec) +
                (double)(now.tv_nsec - start.tv_nsec) / 1e9 >
                tv_seconds(&client->timeout)) {
            char secs[32];
            st->stats.redis_timeouts++;
            snprintf(secs, sizeof(secs), "%.3g", tv_seconds(&client->timeout));
            PyErr_Format(st->TimeoutError,
                         "all %zd Redis connections of this client stayed "
                         "in use for longer than socket_timeout=%ss; "
                         "raise max_connections",
                         client->max_connections, secs);
            return NULL;
        }
        Py_BEGIN_ALLOW_THREADS
        struct timespec pause = {0, 200000};
        nanosleep(&pause, NULL);
        Py_END_ALLOW_THREADS
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
    }
    /* Reserve the slot before dropping the GIL so that other threads see
     * the connection being opened. */
    client->nopen++;
    Py_BEGIN_ALLOW_THREADS
    conn = conn_open(client, &fail);
    Py_END_ALLOW_THREADS
    st->stats.redis_round_trips += (unsigned long long)fail.round_trips;
    if (conn == NULL) {
        client->nopen--;
        report_open_failure(st, client, &fail);
        return NULL;
    }
    st->stats.redis_connections_opened++;
    if (client->pid != conn->pid) {
        /* We forked while connecting (another thread); start afresh. */
        pool_after_fork(client);
        client->nopen = 1;
    }
    return conn;
}

void
alkey_client_release(alkey_client *client, alkey_conn *conn, int broken)
{
    if (conn->pid != getpid()) {
        /* Opened by the parent before a fork: not ours to use or count. */
        conn_close(conn);
        return;
    }
    if (broken || conn->ctx->err) {
        conn_close(conn);
        client->nopen--;
        return;
    }
    conn->next = client->idle;
    client->idle = conn;
}

/* ------------------------------------------------------------------ */
/* Arguments and replies                                                */

/* The arguments of one command as C buffers.  Python objects that back
 * them are kept alive in keep (owned). */
typedef struct {
    int argc;
    int cap;
    const char **argv;
    size_t *argvlen;
    PyObject *keep;
} cmd_args;

static int
args_init(cmd_args *a, Py_ssize_t n)
{
    a->argc = 0;
    a->keep = NULL;
    a->argv = NULL;
    a->argvlen = NULL;
    if (n > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many command arguments");
        return -1;
    }
    a->cap = (int)n;
    a->argv = PyMem_Malloc(sizeof(char *) * (size_t)(n ? n : 1));
    a->argvlen = PyMem_Malloc(sizeof(size_t) * (size_t)(n ? n : 1));
    if (a->argv == NULL || a->argvlen == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void
args_free(cmd_args *a)
{
    PyMem_Free(a->argv);
    PyMem_Free(a->argvlen);
    Py_XDECREF(a->keep);
    a->argv = NULL;
    a->argvlen = NULL;
    a->keep = NULL;
}

static void
args_push_lit(cmd_args *a, const char *s)
{
    assert(a->argc < a->cap);
    a->argv[a->argc] = s;
    a->argvlen[a->argc] = strlen(s);
    a->argc++;
}

/* Encodes a value as redis-py does: bytes as they are, str as UTF-8,
 * int and float as their decimal text; anything else is refused. */
static int
args_push(cmd_args *a, PyObject *obj)
{
    const char *s;
    Py_ssize_t n;
    PyObject *text = NULL;

    if (PyBytes_Check(obj)) {
        s = PyBytes_AS_STRING(obj);
        n = PyBytes_GET_SIZE(obj);
    }
    else if (PyUnicode_Check(obj)) {
        s = PyUnicode_AsUTF8AndSize(obj, &n);
        if (s == NULL) {
            return -1;
        }
    }
    else if (PyByteArray_Check(obj) || PyMemoryView_Check(obj)) {
        text = PyBytes_FromObject(obj);
        if (text == NULL) {
            return -1;
        }
        s = PyBytes_AS_STRING(text);
        n = PyBytes_GET_SIZE(text);
    }
    else if (!PyBool_Check(obj) && (PyLong_Check(obj) || PyFloat_Check(obj))) {
        text = PyLong_Check(obj) ? PyNumber_ToBase(obj, 10)
                                 : PyFloat_Type.tp_repr(obj);
        if (text == NULL) {
            return -1;
        }
        s = PyUnicode_AsUTF8AndSize(text, &n);
        if (s == NULL) {
            Py_DECREF(text);
            return -1;
        }
    }
    else {
        PyErr_Format(PyExc_TypeError,
                     "invalid input of type %.100s for a Redis command: "
                     "convert it to bytes, str, int or float first",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (text != NULL) {
        if (a->keep == NULL) {
            a->keep = PyList_New(0);
            if (a->keep == NULL) {
                Py_DECREF(text);
                return -1;
            }
        }
        if (PyList_Append(a->keep, text) < 0) {
            Py_DECREF(text);
            return -1;
        }
        Py_DECREF(text);
    }
    assert(a->argc < a->cap);
    a->argv[a->argc] = s;
    a->argvlen[a->argc] = (size_t)n;
    a->argc++;
    return 0;
}

/* Converts a reply as redis-py does without decode_responses.  Returns a
 * new reference; error replies nested in arrays become exception objects,
 * a top-level one raises. */
static PyObject *
reply_to_py(alkey_state *st, const redisReply *r, int top)
{
    PyObject *list, *item;
    size_t i;

    switch (r->type) {
    case REDIS_REPLY_STRING:
        return PyBytes_FromStringAndSize(r->str, (Py_ssize_t)r->len);
    case REDIS_REPLY_STATUS:
        if (r->len == 2 && memcmp(r->str, "OK", 2) == 0) {
            Py_RETURN_TRUE;
        }
        return PyBytes_FromStringAndSize(r->str, (Py_ssize_t)r->len);
    case REDIS_REPLY_INTEGER:
        return PyLong_FromLongLong(r->integer);
    case REDIS_REPLY_NIL:
        Py_RETURN_NONE;
    case REDIS_REPLY_ERROR: {
        /* Error text may echo binary keys: never fail to decode it. */
        PyObject *msg = PyUnicode_DecodeUTF8(r->str ? r->str : "",
                                             (Py_ssize_t)r->len, "replace");
        PyObject *exc;
        if (msg == NULL) {
            return NULL;
        }
        if (top) {
            PyErr_SetObject(st->ReplyError, msg);
            Py_DECREF(msg);
            return NULL;
        }
        exc = PyObject_CallOneArg(st->ReplyError, msg);
        Py_DECREF(msg);
        return exc;
    }
    case REDIS_REPLY_ARRAY:
        list = PyList_New((Py_ssize_t)r->elements);
        if (list == NULL) {
            return NULL;
        }
        for (i = 0; i < r->elements; i++) {
            item = reply_to_py(st, r->element[i], 0);
            if (item == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, item);
        }
        return list;
    default:
        PyErr_Format(st->ReplyError, "unexpected Redis reply type %d",
                     r->type);
        return NULL;
    }
}

/* Runs one command and converts its reply; with discard, the connection
 * is closed afterwards instead of going back to the pool (the command
 * changed its state).  Returns a new reference. */
static PyObject *
run_command_ex(alkey_client *self, cmd_args *a, int discard)
{
    alkey_state *st = alkey_type_state(Py_TYPE(self));
    alkey_conn *conn;
    alkey_cmd cmd;
    redisReply *reply = NULL;
    PyObject *result;
    int rc, err_no = 0;

    cmd.argc = a->argc;
    cmd.argv = a->argv;
    cmd.argvlen = a->argvlen;
    conn = alkey_client_acquire(self, st);
    if (conn == NULL) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = alkey_conn_run(conn, 1, &cmd, &reply, &err_no);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        alkey_conn_error(st, self, conn->ctx, err_no);
        alkey_client_release(self, conn, 1);
        return NULL;
    }
    st->stats.redis_round_trips++;
    if (reply->type == REDIS_REPLY_ERROR) {
        st->stats.redis_errors++;
    }
    alkey_client_release(self, conn, discard);
    result = reply_to_py(st, reply, 1);
    freeReplyObject(reply);
    return result;
}

static PyObject *
run_command(alkey_client *self, cmd_args *a)
{
    return run_command_ex(self, a, 0);
}

/* Commands that would leave a pooled connection in a state other callers
 * do not expect: refused, or the connection is closed after them. */
static const char *const refused_commands[] = {
    "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SUBSCRIBE",
    "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
    "SUNSUBSCRIBE", "MONITOR", "QUIT", "RESET", "HELLO", "SYNC", "PSYNC",
    NULL
};
static const char *const discarding_commands[] = {
    "SELECT", "AUTH", "READONLY", "READWRITE", NULL
};
static const char *const discarding_client_subcommands[] = {
    "REPLY", "SETNAME", "TRACKING", "CACHING", "NO-EVICT", "NO-TOUCH",
    "SETINFO", NULL
};

static int
word_in(const char *s, size_t n, const char *const *words)
{
    for (; *words != NULL; words++) {
        if (strlen(*words) == n && strncasecmp(s, *words, n) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Builds and runs a command of literal words followed by Python values. */
static PyObject *
simple_command(alkey_client *self, const char *name, PyObject *const *vals,
               Py_ssize_t nvals)
{
    cmd_args a;
    PyObject *result = NULL;
    Py_ssize_t i;

    if (args_init(&a, nvals + 1) < 0) {
        goto done;
    }
    args_push_lit(&a, name);
    for (i = 0; i < nvals; i++) {
        if (args_push(&a, vals[i]) < 0) {
            goto done;
        }
    }
    result = run_command(self, &a);
done:
    args_free(&a);
    return result;
}

/* ------------------------------------------------------------------ */
/* The type                                                             */

static void
client_free_config(alkey_client *self)
{
    PyMem_Free(self->host);
    PyMem_Free(self->path);
    PyMem_Free(self->username);
    if (self->password != NULL) {
        /* Do not leave the secret in freed memory. */
        volatile char *p = self->password;
        while (*p) {
            *p++ = '\0';
        }
    }
    PyMem_Free(self->password);
    self->host = self->path = self->username = self->password = NULL;
#ifdef ALKEY_HAVE_HIREDIS_SSL
    if (self->ssl_ctx != NULL) {
        SSL_CTX_free((SSL_CTX *)self->ssl_ctx);
    }
#endif
    self->ssl_ctx = NULL;
}

static int
client_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"host", "port", "db", "password", "username",
                             "path", "socket_timeout", "socket_connect_timeout",
                             "max_connections", "ssl", "ssl_ca_certs",
                             "ssl_certfile", "ssl_keyfile", NULL};
    alkey_client *self = (alkey_client *)op;
    alkey_state *st = alkey_type_state(Py_TYPE(op));
    PyObject *host = NULL, *password = NULL, *username = NULL, *path = NULL;
    PyObject *timeout = NULL, *connect_timeout = NULL, *maxconn = NULL;
    PyObject *ca = NULL, *certfile = NULL, *keyfile = NULL;
    int port = 6379, ssl = 0;
    long db = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OilOO$OOOOpOOO:Client",
                                     kwlist, &host, &port, &db, &password,
                                     &username, &path, &timeout,
                                     &connect_timeout, &maxconn, &ssl, &ca,
                                     &certfile, &keyfile)) {
        return -1;
    }
    if (self->host != NULL || self->path != NULL) {
        PyErr_SetString(PyExc_TypeError, "Client.__init__ called twice");
        return -1;
    }
    if (port < 1 || port > 65535) {
        PyErr_Format(st->ConfigurationError,
                     "Redis port must be 1-65535, got %d", port);
        return -1;
    }
    if (db < 0 || db > INT_MAX) {
        PyErr_Format(st->ConfigurationError,
                     "Redis database number must be 0 or more, got %ld", db);
        return -1;
    }
    if (opt_cstr(host, "host", &self->host) < 0 ||
        opt_cstr(path, "path", &self->path) < 0 ||
        opt_cstr(username, "username", &self->username) < 0 ||
        opt_cstr(password, "password", &self->password) < 0) {
        goto error;
    }
    if (self->host == NULL) {
        self->host = dup_cstr("localhost", 9);
        if (self->host == NULL) {
            goto error;
        }
    }
    if (self->username != NULL && self->password == NULL) {
        PyErr_SetString(st->ConfigurationError,
                        "a Redis username needs a password");
        goto error;
    }
    if (timeout_arg(timeout, "socket_timeout", CLIENT_DEFAULT_TIMEOUT_US,
                    &self->timeout) < 0 ||
        timeout_arg(connect_timeout, "socket_connect_timeout",
                    CLIENT_DEFAULT_CONNECT_TIMEOUT_US,
                    &self->connect_timeout) < 0) {
        goto error;
    }
    self->max_connections = 0;
    if (maxconn != NULL && maxconn != Py_None) {
        if (PyBool_Check(maxconn) || !PyLong_Check(maxconn)) {
            PyErr_Format(PyExc_TypeError,
                         "max_connections must be an int or None, not %.100s",
                         Py_TYPE(maxconn)->tp_name);
            goto error;
        }
        self->max_connections = PyLong_AsSsize_t(maxconn);
        if (self->max_connections == -1 && PyErr_Occurred()) {
            goto error;
        }
        if (self->max_connections < 1) {
            PyErr_Format(st->ConfigurationError,
                         "max_connections must be 1 or more (or None for "
                         "no limit), got %zd", self->max_connections);
            goto error;
        }
    }
    self->ssl = ssl;
    if (ssl) {
#ifdef ALKEY_HAVE_HIREDIS_SSL
        char *ca_s = NULL, *cert_s = NULL, *key_s = NULL;
        const char *problem = NULL;
        SSL_CTX *sslctx;
        if (self->path != NULL) {
            PyErr_SetString(st->ConfigurationError,
                            "TLS is for TCP connections, not unix sockets");
            goto error;
        }
        if (opt_cstr(ca, "ssl_ca_certs", &ca_s) < 0 ||
            opt_cstr(certfile, "ssl_certfile", &cert_s) < 0 ||
            opt_cstr(keyfile, "ssl_keyfile", &key_s) < 0) {
            PyMem_Free(ca_s);
            PyMem_Free(cert_s);
            PyMem_Free(key_s);
            goto error;
        }
        sslctx = SSL_CTX_new(TLS_client_method());
        if (sslctx == NULL) {
            problem = "cannot create an OpenSSL context";
        }
        else {
            self->ssl_ctx = sslctx;
            SSL_CTX_set_verify(sslctx, SSL_VERIFY_PEER, NULL);
            if (ca_s != NULL
                    ? SSL_CTX_load_verify_locations(sslctx, ca_s, NULL) != 1
                    : SSL_CTX_set_default_verify_paths(sslctx) != 1) {
                problem = "cannot load the CA certificates (ssl_ca_certs)";
            }
            else if (cert_s != NULL &&
                     SSL_CTX_use_certificate_chain_file(sslctx, cert_s) != 1) {
                problem = "cannot load the client certificate (ssl_certfile)";
            }
            else if (key_s != NULL &&
                     SSL_CTX_use_PrivateKey_file(sslctx, key_s,
                                                 SSL_FILETYPE_PEM) != 1) {
                problem = "cannot load the client key (ssl_keyfile)";
            }
        }
        PyMem_Free(ca_s);
        PyMem_Free(cert_s);
        PyMem_Free(key_s);
        if (problem != NULL) {
            PyErr_Format(st->ConfigurationError,
                         "cannot set up TLS for Redis: %s", problem);
            goto error;
        }
#else
        (void)ca;
        (void)certfile;
        (void)keyfile;
        PyErr_Format(st->ConfigurationError,
                     "rediss:// (TLS) needs libhiredis 1.0 or later built "
                     "with hiredis_ssl, but alkey was built against "
                     "libhiredis %d.%d without it; use redis:// or rebuild "
                     "alkey with libhiredis-ssl installed",
                     HIREDIS_MAJOR, HIREDIS_MINOR);
        goto error;
#endif
    }
    self->port = port;
    self->db = db;
    self->pid = getpid();
    return 0;

error:
    client_free_config(self);
    return -1;
}

static int
client_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static void
client_dealloc(PyObject *op)
{
    alkey_client *self = (alkey_client *)op;
    PyTypeObject *tp = Py_TYPE(op);

    PyObject_GC_UnTrack(op);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    if (self->pid == getpid()) {
        pool_clear(self);
    }
    else {
        pool_after_fork(self);
    }
    client_free_config(self);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
client_repr(PyObject *op)
{
    alkey_client *self = (alkey_client *)op;
    char maxbuf[32] = "None";

    if (self->host == NULL && self->path == NULL) {
        return PyUnicode_FromFormat("<%s (not initialised)>",
                                    Py_TYPE(op)->tp_name);
    }
    if (self->max_connections) {
        snprintf(maxbuf, sizeof(maxbuf), "%zd", self->max_connections);
    }
    /* Never the password; the user name is not a secret. */
    if (self->path != NULL) {
        return PyUnicode_FromFormat(
            "<alkey.Client unix://%s%s%s?db=%ld max_connections=%s>",
            self->username ? self->username : "",
            self->username ? "@" : "", self->path, self->db, maxbuf);
    }
    return PyUnicode_FromFormat(
        "<alkey.Client %s://%s%s%s:%d/%ld max_connections=%s>",
        self->ssl ? "rediss" : "redis",
        self->username ? self->username : "",
        self->username ? "@" : "", self->host, self->port, self->db, maxbuf);
}

/* --- methods --- */

PyDoc_STRVAR(client_get_doc,
"get(name) -> bytes | None\n\nThe value of key ``name``, or None.");

static PyObject *
client_get(PyObject *self, PyObject *name)
{
    return simple_command((alkey_client *)self, "GET", &name, 1);
}

/* Appends an expiry argument: an int, or anything with total_seconds()
 * (datetime.timedelta), as redis-py accepts. */
static int
push_expiry(cmd_args *a, const char *word, PyObject *value, int millis)
{
    PyObject *num = NULL;
    long long n;
    int rc = -1;

    if (!PyBool_Check(value) && PyLong_Check(value)) {
        Py_INCREF(value);
        num = value;
    }
    else if (!PyBool_Check(value) && !PyFloat_Check(value)) {
        /* A timedelta, or anything else with total_seconds(). */
        PyObject *secs = PyObject_CallMethod(value, "total_seconds", NULL);
        double d;
        if (secs == NULL) {
            if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError,
                             "%s must be an int or a datetime.timedelta, "
                             "not %.100s", millis ? "px" : "ex",
                             Py_TYPE(value)->tp_name);
            }
            return -1;
        }
        d = PyFloat_AsDouble(secs);
        Py_DECREF(secs);
        if (d == -1.0 && PyErr_Occurred()) {
            return -1;
        }
        num = PyLong_FromDouble(millis ? d * 1000.0 : d);
    }
    else {
        PyErr_Format(PyExc_TypeError,
                     "%s must be an int or a datetime.timedelta, not %.100s",
                     millis ? "px" : "ex", Py_TYPE(value)->tp_name);
        return -1;
    }
    if (num == NULL) {
        return -1;
    }
    n = PyLong_AsLongLong(num);
    if (n == -1 && PyErr_Occurred()) {
        goto done;
    }
    if (n <= 0) {
        PyErr_Format(PyExc_ValueError, "%s must be above 0, got %R",
                     millis ? "px" : "ex", value);
        goto done;
    }
    args_push_lit(a, word);
    rc = args_push(a, num);
done:
    Py_DECREF(num);
    return rc;
}

PyDoc_STRVAR(client_set_doc,
"set(name, value, ex=None, px=None, nx=False, xx=False) -> True | None\n\n"
"Sets key ``name`` to ``value``; ``ex``/``px`` give an expiry in seconds or\n"
"milliseconds (int or timedelta), ``nx`` only if the key does not exist,\n"
"``xx`` only if it does.  None when nx/xx stopped it, as in redis-py.");

static PyObject *
client_set(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"name", "value", "ex", "px", "nx", "xx", NULL};
    PyObject *name, *value, *ex = Py_None, *px = Py_None, *result = NULL;
    int nx = 0, xx = 0;
    cmd_args a;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OOpp:set", kwlist,
                                     &name, &value, &ex, &px, &nx, &xx)) {
        return NULL;
    }
    if (nx && xx) {
        PyErr_SetString(PyExc_ValueError, "nx and xx are exclusive");
        return NULL;
    }
    if (ex != Py_None && px != Py_None) {
        PyErr_SetString(PyExc_ValueError, "ex and px are exclusive");
        return NULL;
    }
    if (args_init(&a, 6) < 0) {
        goto done;
    }
    args_push_lit(&a, "SET");
    if (args_push(&a, name) < 0 || args_push(&a, value) < 0) {
        goto done;
    }
    if (ex != Py_None && push_expiry(&a, "EX", ex, 0) < 0) {
        goto done;
    }
    if (px != Py_None && push_expiry(&a, "PX", px, 1) < 0) {
        goto done;
    }
    if (nx) {
        args_push_lit(&a, "NX");
    }
    if (xx) {
        args_push_lit(&a, "XX");
    }
    result = run_command((alkey_client *)self, &a);
done:
    args_free(&a);
    return result;
}

PyDoc_STRVAR(client_setex_doc,
"setex(name, time, value) -> True\n\nSets ``name`` with an expiry of "
"``time`` seconds (int or timedelta).");

static PyObject *
client_setex(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    cmd_args a;
    PyObject *result = NULL;

    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "setex() takes 3 arguments (name, time, value), %zd "
                     "given", nargs);
        return NULL;
    }
    if (args_init(&a, 5) < 0) {
        goto done;
    }
    args_push_lit(&a, "SET");
    if (args_push(&a, args[0]) < 0 || args_push(&a, args[2]) < 0 ||
        push_expiry(&a, "EX", args[1], 0) < 0) {
        goto done;
    }
    result = run_command((alkey_client *)self, &a);
done:
    args_free(&a);
    return result;
}

PyDoc_STRVAR(client_mget_doc,
"mget(keys, *args) -> list\n\nThe values of several keys in one round trip "
"(``keys`` is a key or\na list of keys), None for each missing one.");

static PyObject *
client_mget(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *keys = NULL, *seq = NULL, *result = NULL;
    Py_ssize_t i, n;
    cmd_args a;

    a.argv = NULL;
    a.argvlen = NULL;
    a.keep = NULL;
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "mget() needs at least one key");
        return NULL;
    }
    keys = PyList_New(0);
    if (keys == NULL) {
        return NULL;
    }
    if (PyList_Check(args[0]) || PyTuple_Check(args[0])) {
        seq = PySequence_Fast(args[0], "keys");
        if (seq == NULL) {
            goto done;
        }
        for (i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
            if (PyList_Append(keys, PySequence_Fast_GET_ITEM(seq, i)) < 0) {
                goto done;
            }
        }
    }
    else if (PyList_Append(keys, args[0]) < 0) {
        goto done;
    }
    for (i = 1; i < nargs; i++) {
        if (PyList_Append(keys, args[i]) < 0) {
            goto done;
        }
    }
    n = PyList_GET_SIZE(keys);
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "mget() needs at least one key");
        goto done;
    }
    if (args_init(&a, n + 1) < 0) {
        goto done;
    }
    args_push_lit(&a, "MGET");
    for (i = 0; i < n; i++) {
        if (args_push(&a, PyList_GET_ITEM(keys, i)) < 0) {
            goto done;
        }
    }
    result = run_command((alkey_client *)self, &a);
done:
    args_free(&a);
    Py_XDECREF(seq);
    Py_DECREF(keys);
    return result;
}

PyDoc_STRVAR(client_delete_doc,
"delete(*names) -> int\n\nDeletes keys; the number deleted.");

static PyObject *
client_delete(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "delete() needs at least one key");
        return NULL;
    }
    return simple_command((alkey_client *)self, "DEL", args, nargs);
}

PyDoc_STRVAR(client_exists_doc,
"exists(*names) -> int\n\nHow many of the keys exist.");

static PyObject *
client_exists(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "exists() needs at least one key");
        return NULL;
    }
    return simple_command((alkey_client *)self, "EXISTS", args, nargs);
}

PyDoc_STRVAR(client_ttl_doc,
"ttl(name) -> int\n\nSeconds to live of ``name``: -1 without expiry, -2 "
"when missing.");

static PyObject *
client_ttl(PyObject *self, PyObject *name)
{
    return simple_command((alkey_client *)self, "TTL", &name, 1);
}

PyDoc_STRVAR(client_ping_doc,
"ping() -> True\n\nOne round trip to the server; raises when it fails.");

static PyObject *
client_ping(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *r = simple_command((alkey_client *)self, "PING", NULL, 0);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(client_flushdb_doc,
"flushdb(asynchronous=False) -> True\n\nDeletes every key of the "
"selected database.");

static PyObject *
client_flushdb(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"asynchronous", NULL};
    int async = 0;
    cmd_args a;
    PyObject *result = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p:flushdb", kwlist,
                                     &async)) {
        return NULL;
    }
    if (args_init(&a, 2) < 0) {
        goto done;
    }
    args_push_lit(&a, "FLUSHDB");
    if (async) {
        args_push_lit(&a, "ASYNC");
    }
    result = run_command((alkey_client *)self, &a);
done:
    args_free(&a);
    return result;
}

PyDoc_STRVAR(client_execute_command_doc,
"execute_command(*args) -> reply\n\nRuns any command; replies convert as "
"in redis-py without\ndecode_responses: bulk strings to bytes, integers to "
"int, nil to\nNone, arrays to lists, +OK to True and other status replies "
"to bytes.\nAn error reply raises alkey.ReplyError.");

static PyObject *
client_execute_command(PyObject *self, PyObject *const *args,
                       Py_ssize_t nargs)
{
    cmd_args a;
    PyObject *result = NULL;
    Py_ssize_t i;
    int discard;

    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError,
                        "execute_command() needs a command name");
        return NULL;
    }
    if (args_init(&a, nargs) < 0) {
        goto done;
    }
    for (i = 0; i < nargs; i++) {
        if (args_push(&a, args[i]) < 0) {
            goto done;
        }
    }
    if (word_in(a.argv[0], a.argvlen[0], refused_commands)) {
        PyErr_Format(PyExc_ValueError,
                     "execute_command() does not run %.40s: it changes the "
                     "state of a pooled connection; use redis-py for "
                     "transactions, pub/sub and protocol changes",
                     a.argv[0]);
        goto done;
    }
    discard = word_in(a.argv[0], a.argvlen[0], discarding_commands) ||
              (a.argc > 1 && a.argvlen[0] == 6 &&
               strncasecmp(a.argv[0], "CLIENT", 6) == 0 &&
               word_in(a.argv[1], a.argvlen[1],
                       discarding_client_subcommands));
    result = run_command_ex((alkey_client *)self, &a, discard);
done:
    args_free(&a);
    return result;
}

PyDoc_STRVAR(client_close_doc,
"close() -> None\n\nCloses the idle connections; later calls reconnect.");

static PyObject *
client_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    alkey_client *self = (alkey_client *)op;

    if (self->pid != getpid()) {
        pool_after_fork(self);
    }
    else {
        pool_clear(self);
    }
    Py_RETURN_NONE;
}

static PyObject *
client_get_timeout(PyObject *op, void *which)
{
    alkey_client *self = (alkey_client *)op;
    return PyFloat_FromDouble(tv_seconds(which ? &self->connect_timeout
                                               : &self->timeout));
}

static PyObject *
client_get_str(PyObject *op, void *closure)
{
    alkey_client *self = (alkey_client *)op;
    const char *s = NULL;

    switch ((int)(intptr_t)closure) {
    case 0: s = self->path ? NULL : self->host; break;
    case 1: s = self->path; break;
    case 2: s = self->username; break;
    }
    if (s == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(s);
}

static PyObject *
client_get_int(PyObject *op, void *closure)
{
    alkey_client *self = (alkey_client *)op;

    switch ((int)(intptr_t)closure) {
    case 0:
        if (self->path) {
            Py_RETURN_NONE;
        }
        return PyLong_FromLong(self->port);
    case 1:
        return PyLong_FromLong(self->db);
    case 2:
        if (self->max_connections == 0) {
            Py_RETURN_NONE;
        }
        return PyLong_FromSsize_t(self->max_connections);
    case 3:
        return PyLong_FromSsize_t(self->pid == getpid() ? self->nopen : 0);
    default:
        return PyBool_FromLong(self->ssl);
    }
}

static PyGetSetDef client_getset[] = {
    {"host", client_get_str, NULL, "Server host (None for a unix socket).",
     (void *)0},
    {"path", client_get_str, NULL, "Unix socket path, or None.", (void *)1},
    {"username", client_get_str, NULL, "ACL user name, or None.", (void *)2},
    {"port", client_get_int, NULL, "Server port (None for a unix socket).",
     (void *)0},
    {"db", client_get_int, NULL, "Selected database number.", (void *)1},
    {"max_connections", client_get_int, NULL,
     "Pool size limit, or None for no limit.", (void *)2},
    {"connection_count", client_get_int, NULL,
     "Connections this process has open (idle and in use).", (void *)3},
    {"ssl", client_get_int, NULL, "Whether TLS is used.", (void *)4},
    {"socket_timeout", client_get_timeout, NULL,
     "Seconds a read or write may block.", NULL},
    {"socket_connect_timeout", client_get_timeout, NULL,
     "Seconds a connection attempt may take.", (void *)1},
    {NULL}
};

static PyMethodDef client_methods[] = {
    {"get", client_get, METH_O, client_get_doc},
    {"set", (PyCFunction)(void (*)(void))client_set,
     METH_VARARGS | METH_KEYWORDS, client_set_doc},
    {"setex", (PyCFunction)(void (*)(void))client_setex, METH_FASTCALL,
     client_setex_doc},
    {"mget", (PyCFunction)(void (*)(void))client_mget, METH_FASTCALL,
     client_mget_doc},
    {"delete", (PyCFunction)(void (*)(void))client_delete, METH_FASTCALL,
     client_delete_doc},
    {"exists", (PyCFunction)(void (*)(void))client_exists, METH_FASTCALL,
     client_exists_doc},
    {"ttl", client_ttl, METH_O, client_ttl_doc},
    {"ping", client_ping, METH_NOARGS, client_ping_doc},
    {"flushdb", (PyCFunction)(void (*)(void))client_flushdb,
     METH_VARARGS | METH_KEYWORDS, client_flushdb_doc},
    {"execute_command", (PyCFunction)(void (*)(void))client_execute_command,
     METH_FASTCALL, client_execute_command_doc},
    {"close", client_close, METH_NOARGS, client_close_doc},
    {NULL}
};

static PyMemberDef client_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(alkey_client, weakreflist),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL}
};

PyDoc_STRVAR(client_doc,
"Client(host='localhost', port=6379, db=0, password=None, username=None,\n"
"       *, path=None, socket_timeout=0.5, socket_connect_timeout=0.25,\n"
"       max_connections=None, ssl=False, ssl_ca_certs=None,\n"
"       ssl_certfile=None, ssl_keyfile=None)\n\n"
"A Redis client over a pool of libhiredis connections.  Safe to share\n"
"between threads (the GIL is released during network I/O) and across\n"
"fork() (a child opens its own connections).  Use alkey.client.\n"
"get_redis_client() to get the process-wide one configured from a URL.");

static PyType_Slot client_slots[] = {
    {Py_tp_doc, (void *)client_doc},
    {Py_tp_init, client_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, client_dealloc},
    {Py_tp_traverse, client_traverse},
    {Py_tp_repr, client_repr},
    {Py_tp_methods, client_methods},
    {Py_tp_members, client_members},
    {Py_tp_getset, client_getset},
    {0, NULL}
};

PyType_Spec alkey_client_spec = {
    .name = "alkey._native.Client",
    .basicsize = sizeof(alkey_client),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = client_slots,
};
