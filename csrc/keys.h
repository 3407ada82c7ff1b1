/* Cache key encoding, identifier validation and hashing. */
#ifndef ALKEY_KEYS_H
#define ALKEY_KEYS_H

#include "state.h"

/* What alkey_oid_kind() recognises. */
#define ALKEY_OID_NONE 0      /* not an identifier */
#define ALKEY_OID_INSTANCE 1  /* alkey:users#1, alkey:tags#s:abc, ... */
#define ALKEY_OID_TABLE 2     /* alkey:users#*, alkey:public.users#* */
#define ALKEY_OID_GLOBAL 3    /* alkey:*#* */
#define ALKEY_OID_EPOCH 4     /* alkey:users#!, alkey:*#! (global epoch) */

/* The global epoch: replaced to change every instance and table key. */
#define ALKEY_GLOBAL_EPOCH "alkey:*#!"
#define ALKEY_GLOBAL_EPOCH_LEN 9

/* Containers nested deeper than this in a key argument are refused with
 * a ValueError: a top-level tuple is level 1, a tuple in it level 2. */
#define ALKEY_KEY_MAX_NESTING 64

int alkey_oid_kind(const char *s, Py_ssize_t n);

/* Length of the "alkey:<table>" prefix of a valid instance or table
 * identifier s (everything before its "#"). */
size_t alkey_oid_table_len(const char *s, size_t n);

/* A key being built: the readable key with a hole after each identifier
 * where its token goes.  buf holds the text; slots[i] says where the i-th
 * identifier lies in buf and where its token is inserted. */
typedef struct {
    size_t oid_off;     /* identifier text: buf[oid_off, oid_off + oid_len) */
    size_t oid_len;
    size_t insert_at;   /* token is inserted before buf[insert_at] */
    int kind;           /* ALKEY_OID_* of the identifier, never NONE */
} alkey_slot;

typedef struct {
    char *buf;
    size_t len, cap;
    alkey_slot *slots;
    size_t nslots, slots_cap;
} alkey_keyplan;

void alkey_keyplan_init(alkey_keyplan *plan);
void alkey_keyplan_free(alkey_keyplan *plan);

/* Encodes every item of the sequence args (borrowed) into plan; an item
 * that is an identifier, or that the state's resolver maps to one, gets a
 * slot.  Returns 0, or -1 with an exception set. */
int alkey_keyplan_add_args(alkey_keyplan *plan, alkey_state *st,
                           PyObject *args);

/* A slot's token is made of at most this many parts: an identifier's own
 * token, its table's epoch, the global epoch. */
#define ALKEY_TOKEN_MAX_PARTS 3

/* The token of one slot: n parts (not NUL-terminated), joined by "." in
 * the key.  Each part is already in key form, copied as it is: it holds
 * no "/" or "~" (and, when there are several, no "."), so that the key
 * still splits one way only. */
typedef struct {
    const char *part[ALKEY_TOKEN_MAX_PARTS];
    size_t len[ALKEY_TOKEN_MAX_PARTS];
    int n;
} alkey_slot_token;

/* Joins the plan and the tokens (one per slot) into the key; hashed gives
 * the fixed-length digest form.  Returns a new reference to a str, or NULL
 * with an exception set. */
PyObject *alkey_keyplan_finish(alkey_keyplan *plan,
                               const alkey_slot_token *tokens, int hashed);

/* Module-level functions defined in keys.c. */
PyObject *alkey_py_valid_object_id(PyObject *module, PyObject *arg);
PyObject *alkey_py_valid_write_token(PyObject *module, PyObject *arg);
PyObject *alkey_py_oid_kind(PyObject *module, PyObject *arg);
PyObject *alkey_py_encode_key(PyObject *module, PyObject *const *args,
                              Py_ssize_t nargs);
extern const char alkey_valid_object_id_doc[];
extern const char alkey_valid_write_token_doc[];
extern const char alkey_oid_kind_doc[];
extern const char alkey_encode_key_doc[];

#endif
