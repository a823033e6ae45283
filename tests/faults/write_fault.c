/*
 * A failed write at a chosen write: an LD_PRELOAD library for the write-failure sweep
 * (tests/integration/faults.rs, docs/reliability.md, "Faults counted").
 *
 * It stands between advmnist and the C library's write(2), writev(2), pwrite(2), fsync(2),
 * fdatasync(2) and rename(2) (and renameat(2)), counts the calls that touch a regular file (a
 * write or sync on a pipe or a terminal, such as the progress on stderr, is not counted; a
 * rename always is), and makes the one numbered ADVMNIST_FAULT_AT fail with the errno named by
 * ADVMNIST_FAULT_ERRNO (ENOSPC, the default, or EACCES), without doing it. Every later call
 * goes through: a program that goes on after a failed write must notice it by itself.
 *
 * With ADVMNIST_FAULT_COUNT set to a path, it writes the number of calls it counted there when
 * the process exits normally (the sweep's first, fault-free run learns how many points to try);
 * with ADVMNIST_FAULT_LOG, the path of the file whose call it failed.
 *
 * The release binary is the one tested, untouched: nothing of this is ever linked into it. The
 * test compiles this file with the C compiler that links Rust programs (`cc`), so it needs
 * nothing more than building advmnist does.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static atomic_long counted;
static long fault_at = -1;
static int fault_errno = ENOSPC;

__attribute__((constructor)) static void read_settings(void) {
    const char *at = getenv("ADVMNIST_FAULT_AT");
    if (at && *at) fault_at = atol(at);
    const char *e = getenv("ADVMNIST_FAULT_ERRNO");
    if (e && strcmp(e, "EACCES") == 0) fault_errno = EACCES;
}

/* Writes the count with raw system calls, so that it is not counted itself. */
__attribute__((destructor)) static void report_count(void) {
    const char *path = getenv("ADVMNIST_FAULT_COUNT");
    if (!path || !*path) return;
    char text[32];
    int n = snprintf(text, sizeof text, "%ld\n", atomic_load(&counted));
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    syscall(SYS_write, fd, text, (size_t)n);
    syscall(SYS_close, fd);
}

static int regular(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

/* Writes the path of the file whose call failed to ADVMNIST_FAULT_LOG, if set, with raw system
 * calls (not counted): the test tells a write the command tolerates (a cache) from one it must
 * not. `fd` is the file's descriptor, or -1 with `path` given. */
static void log_failure(int fd, const char *path) {
    const char *log = getenv("ADVMNIST_FAULT_LOG");
    if (!log || !*log) return;
    char target[4096];
    ssize_t len;
    if (fd >= 0) {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        len = (ssize_t)syscall(SYS_readlinkat, AT_FDCWD, link, target, sizeof target - 1);
        if (len < 0) return;
    } else {
        len = (ssize_t)strnlen(path, sizeof target - 1);
        memcpy(target, path, (size_t)len);
    }
    target[len++] = '\n';
    int out = (int)syscall(SYS_openat, AT_FDCWD, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) return;
    syscall(SYS_write, out, target, (size_t)len);
    syscall(SYS_close, out);
}

/* Counts one call; true when it is the one to fail (errno then set, the file logged). */
static int fails_now(int fd, const char *path) {
    long n = atomic_fetch_add(&counted, 1) + 1;
    if (n == fault_at) {
        log_failure(fd, path);
        errno = fault_errno;
        return 1;
    }
    return 0;
}

#define NEXT(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

ssize_t write(int fd, const void *buf, size_t count) {
    if (regular(fd) && fails_now(fd, NULL)) return -1;
    return NEXT(write)(fd, buf, count);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    if (regular(fd) && fails_now(fd, NULL)) return -1;
    return NEXT(writev)(fd, iov, iovcnt);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    if (regular(fd) && fails_now(fd, NULL)) return -1;
    return NEXT(pwrite)(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    if (regular(fd) && fails_now(fd, NULL)) return -1;
    return NEXT(pwrite64)(fd, buf, count, offset);
}

int fsync(int fd) {
    if (regular(fd) && fails_now(fd, NULL)) return -1;
    return NEXT(fsync)(fd);
}

int fdatasync(int fd) {
    if (regular(fd) && fails_now(fd, NULL)) return -1;
    return NEXT(fdatasync)(fd);
}

int rename(const char *from, const char *to) {
    if (fails_now(-1, to)) return -1;
    return NEXT(rename)(from, to);
}

int renameat(int fromfd, const char *from, int tofd, const char *to) {
    if (fails_now(-1, to)) return -1;
    return NEXT(renameat)(fromfd, from, tofd, to);
}
