//go:build linux

package detached

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// Start starts command in a session of its own (signals to the daemon's
// process group, a terminal's ^C or a service manager's stop of the group,
// do not reach it), in directory "/", with its output appended to logPath
// (created 0600). It returns the process's pid and a channel that gets its
// exit status if it exits while this process runs; after this process
// exits, init reaps it.
func Start(command []string, logPath string) (pid int, exited <-chan error, err error) {
	if len(command) == 0 {
		return 0, nil, fmt.Errorf("no command to start")
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, nil, err
	}
	defer logf.Close()
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("start %s: %w", command[0], err)
	}
	ch := make(chan error, 1)
	go func() { ch <- cmd.Wait() }()
	return cmd.Process.Pid, ch, nil
}
