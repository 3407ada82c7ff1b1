/* The change set of one session transaction, and token invalidation. */
#ifndef ALKEY_CHANGESET_H
#define ALKEY_CHANGESET_H

#include "state.h"

/* alkey._native.ChangeSet: identifiers in insertion order, without
 * duplicates, with savepoint marks. */
extern PyType_Spec alkey_changeset_spec;

PyObject *alkey_py_invalidate_tokens(PyObject *module, PyObject *const *args,
                                     Py_ssize_t nargs);
extern const char alkey_invalidate_tokens_doc[];

#endif
