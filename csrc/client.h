/* The native Redis client: a pool of hiredis connections. */
#ifndef ALKEY_CLIENT_H
#define ALKEY_CLIENT_H

#include "state.h"

#include <sys/time.h>
#include <sys/types.h>
#include <hiredis.h>

/* One pooled connection.  A connection is used by one thread at a time:
 * it is either on the client's idle list or checked out by exactly one
 * caller. */
typedef struct alkey_conn {
    redisContext *ctx;
    pid_t pid;                  /* process that opened it */
    struct alkey_conn *next;    /* idle list link */
} alkey_conn;

typedef struct {
    PyObject_HEAD
    /* Configuration, fixed at construction (PyMem-owned strings). */
    char *host;
    int port;
    char *path;                 /* unix socket, or NULL */
    char *username;
    char *password;
    long db;
    struct timeval timeout;
    struct timeval connect_timeout;
    Py_ssize_t max_connections; /* 0: unbounded */
    int ssl;
    void *ssl_ctx;              /* SSL_CTX * when built with hiredis_ssl */
    /* The pool, guarded by the GIL. */
    alkey_conn *idle;
    Py_ssize_t nopen;           /* idle + checked out */
    pid_t pid;
    PyObject *weakreflist;
} alkey_client;

/* One command of a pipeline. */
typedef struct {
    int argc;
    const char **argv;
    const size_t *argvlen;
} alkey_cmd;

extern PyType_Spec alkey_client_spec;

/* Checks out a connection, opening one if none is idle (the GIL is released
 * while connecting).  GIL held.  Returns NULL with an exception set.
 * Counts what it opens, and its failures, in the module's stats. */
alkey_conn *alkey_client_acquire(alkey_client *client, alkey_state *st);

/* Returns a connection to the pool, or closes it when broken.  GIL held. */
void alkey_client_release(alkey_client *client, alkey_conn *conn, int broken);

/* Sends the commands and reads one reply each into replies (owned by the
 * caller, freed with freeReplyObject).  Call WITHOUT the GIL.  Returns 0,
 * or -1 when the connection failed (conn->ctx->err says how; *err_no gets
 * errno); on failure no reply is left allocated. */
int alkey_conn_run(alkey_conn *conn, int ncmds, const alkey_cmd *cmds,
                   redisReply **replies, int *err_no);

/* Sets the exception that describes a failed connection, counts it in
 * redis_timeouts or redis_errors, and returns NULL. */
PyObject *alkey_conn_error(alkey_state *st, alkey_client *client,
                           const redisContext *ctx, int err_no);

#endif
