package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// process is a daemon started as a child of the test process: no systemd
// reaps orphans here, so every daemon is waited for.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // set before done is closed
}

// startProcess starts argv with env, its output appended to logPath.
func startProcess(name, logPath string, env []string, argv ...string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = env
	// Its own process group: a Ctrl-C to the test does not reach it, so
	// the teardown order stays ours. If the test process dies without a
	// teardown (killed, SIGPIPE), the daemon gets SIGTERM instead of
	// living on as an orphan holding mounts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL. Safe to call twice.
func (p *process) stop(grace time.Duration) error {
	if p == nil || p.exited() {
		return nil
	}
	if exited, err := p.terminate(grace); exited {
		return err
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.name, grace)
}

// terminate sends SIGTERM and waits up to grace for the process to exit.
// exited says whether it did; err is then set if it exited with an error.
func (p *process) terminate(grace time.Duration) (exited bool, err error) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			return true, fmt.Errorf("%s exited after SIGTERM: %w (see %s)", p.name, p.err, p.log)
		}
		return true, nil
	case <-time.After(grace):
		return false, nil
	}
}

// waitSocket waits until a unix socket accepts connections, the process
// exits, or timeout passes.
func (p *process) waitSocket(ctx context.Context, sock string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before listening on %s: %v (see %s)", p.name, sock, p.err, p.log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %s: %w (see %s)", p.name, sock, timeout, err, p.log)
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
