/* libFuzzer target: alkey_oid_kind() (csrc/keys.c) on raw bytes.
 *
 * The kind is compared with ref_kind(), a second reading of the grammar
 * written from the key spec (split at "#" first, then check the pieces,
 * where keys.c scans left to right), and every accepted identifier is
 * checked for what the key encoding relies on: pure printable ASCII, one
 * "#", no "/" or "~" (the key's separators), and alkey_oid_table_len()
 * ending at the "#".  Needs no interpreter: alkey_oid_kind is pure C. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"

#define ALNUM "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

static const char NAME_RAW[] = ALNUM "_$-";
static const char VALUE_RAW[] = ALNUM "-_.:@+=!$&'()*;";

static int
in_set(unsigned char c, const char *set)
{
    /* strchr() would find the terminator for c == 0. */
    return c != 0 && strchr(set, c) != NULL;
}

static int
upper_hex(unsigned char c)
{
    const char *at = c != 0 ? strchr("0123456789ABCDEF", c) : NULL;

    return at != NULL ? (int)(at - "0123456789ABCDEF") : -1;
}

/* 1 if s[0, n) is a run of raw bytes and escapes of bytes that may not
 * stand raw, with at least min_units of them. */
static int
escaped_ok(const unsigned char *s, size_t n, const char *raw, size_t min_units)
{
    size_t i = 0, units = 0;

    while (i < n) {
        if (in_set(s[i], raw)) {
            i++;
        }
        else if (s[i] == '%' && n - i >= 3 && upper_hex(s[i + 1]) >= 0
                 && upper_hex(s[i + 2]) >= 0
                 && !in_set((unsigned char)(upper_hex(s[i + 1]) * 16
                                            + upper_hex(s[i + 2])), raw)) {
            i += 3;
        }
        else {
            return 0;
        }
        units++;
    }
    return units >= min_units;
}

static int
int_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;

    if (n == 1 && s[0] == '0') {
        return 1;
    }
    if (n > 0 && s[0] == '-') {
        i = 1;
    }
    if (i == n || s[i] < '1' || s[i] > '9') {
        return 0;
    }
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return 1;
}

static int
part_ok(const unsigned char *s, size_t n)
{
    if (int_ok(s, n)) {
        return 1;
    }
    return n >= 2 && in_set(s[0], "subdtnfx") && s[1] == ':'
           && escaped_ok(s + 2, n - 2, VALUE_RAW, 0);
}

static int
ref_kind(const unsigned char *s, size_t n)
{
    const unsigned char *rest, *hash, *dot, *pk, *end, *comma;
    size_t m;

    if (n < 6 || memcmp(s, "alkey:", 6) != 0) {
        return ALKEY_OID_NONE;
    }
    rest = s + 6;
    m = n - 6;
    end = s + n;
    if (m == 3 && memcmp(rest, "*#*", 3) == 0) {
        return ALKEY_OID_GLOBAL;
    }
    if (m == 3 && memcmp(rest, "*#!", 3) == 0) {
        return ALKEY_OID_EPOCH;
    }
    hash = memchr(rest, '#', m);
    if (hash == NULL) {
        return ALKEY_OID_NONE;
    }
    dot = memchr(rest, '.', (size_t)(hash - rest));
    if (dot != NULL) {
        if (!escaped_ok(rest, (size_t)(dot - rest), NAME_RAW, 1)
            || !escaped_ok(dot + 1, (size_t)(hash - dot - 1), NAME_RAW, 1)) {
            return ALKEY_OID_NONE;
        }
    }
    else if (!escaped_ok(rest, (size_t)(hash - rest), NAME_RAW, 1)) {
        return ALKEY_OID_NONE;
    }
    pk = hash + 1;
    if (end - pk == 1 && *pk == '*') {
        return ALKEY_OID_TABLE;
    }
    if (end - pk == 1 && *pk == '!') {
        return ALKEY_OID_EPOCH;
    }
    for (;;) {
        comma = memchr(pk, ',', (size_t)(end - pk));
        if (!part_ok(pk, (size_t)((comma ? comma : end) - pk))) {
            return ALKEY_OID_NONE;
        }
        if (comma == NULL) {
            return ALKEY_OID_INSTANCE;
        }
        pk = comma + 1;
    }
}

static void
fail(const uint8_t *data, size_t size, const char *what, int kind, int ref)
{
    size_t i;

    fprintf(stderr, "oid_fuzzer: %s (alkey_oid_kind %d, spec %d) for \"",
            what, kind, ref);
    for (i = 0; i < size; i++) {
        if (data[i] >= 0x20 && data[i] < 0x7f && data[i] != '"'
            && data[i] != '\\') {
            fputc(data[i], stderr);
        }
        else {
            fprintf(stderr, "\\x%02x", data[i]);
        }
    }
    fprintf(stderr, "\"\n");
    abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    int kind = alkey_oid_kind(s, (Py_ssize_t)size);
    int ref = ref_kind(data, size);
    size_t i, hashes = 0, hash_at = 0;

    if (kind != ref) {
        fail(data, size, "kind differs from the spec", kind, ref);
    }
    if (kind == ALKEY_OID_NONE) {
        return 0;
    }
    if (kind < ALKEY_OID_NONE || kind > ALKEY_OID_EPOCH) {
        fail(data, size, "unknown kind", kind, ref);
    }
    for (i = 0; i < size; i++) {
        if (data[i] <= 0x20 || data[i] >= 0x7f || data[i] == '/'
            || data[i] == '~') {
            fail(data, size, "identifier holds a byte the key escapes",
                 kind, ref);
        }
        if (data[i] == '#') {
            hashes++;
            hash_at = i;
        }
    }
    if (hashes != 1) {
        fail(data, size, "identifier without exactly one '#'", kind, ref);
    }
    if ((kind == ALKEY_OID_GLOBAL) != (size == 9
                                       && memcmp(s, "alkey:*#*", 9) == 0)) {
        fail(data, size, "global token misread", kind, ref);
    }
    if (kind == ALKEY_OID_EPOCH && s[size - 1] != '!') {
        fail(data, size, "epoch not ending in '!'", kind, ref);
    }
    if (kind == ALKEY_OID_TABLE && s[size - 1] != '*') {
        fail(data, size, "table token not ending in '*'", kind, ref);
    }
    if ((kind == ALKEY_OID_INSTANCE || kind == ALKEY_OID_TABLE)
        && alkey_oid_table_len(s, size) != hash_at) {
        fail(data, size, "alkey_oid_table_len is not the '#'", kind, ref);
    }
    return 0;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (alkey_oid_kind(NULL, 0) != ALKEY_OID_NONE) {
        fprintf(stderr, "oid_fuzzer: NULL is an identifier\n");
        abort();
    }
    return 0;
}
