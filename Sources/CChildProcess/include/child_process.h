#ifndef UPDRAFT_CCHILDPROCESS_H
#define UPDRAFT_CCHILDPROCESS_H

#include <sys/types.h>

/// Starts `path` with `argv` and `envp` (NULL-terminated) in a child that
///  - has every signal at its default disposition and none blocked,
///  - gets `death_signal` when the thread that called this exits (prctl
///    PR_SET_PDEATHSIG; 0 for none), and exits at once if the parent is already gone,
///  - reads /dev/null and appends stdout and stderr to `output` (created 0644),
///  - inherits no other descriptor of this process.
/// Between vfork and exec the child calls only async-signal-safe functions.
/// Returns 0 and the child's pid in `pid`, or the errno of what failed (vfork, or in
/// the child: open, prctl or execve).
int updraft_spawn(const char *path, char *const argv[], char *const envp[], const char *output,
                  int death_signal, pid_t *pid);

#endif
