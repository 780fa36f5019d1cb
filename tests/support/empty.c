/* Keeps the support library non-empty before any helper exists. */
typedef int tw__test_support_empty;
