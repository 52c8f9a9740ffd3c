//go:build !linux

package main

import (
	"errors"
	"os/exec"
	"time"
)

var errNoCPU = errors.New("CPU accounting is only implemented on Linux")

func selfCPU() (time.Duration, error)                      { return 0, errNoCPU }
func pidCPU(pid int) (time.Duration, error)                { return 0, errNoCPU }
func machineCPU() (busy, softirq time.Duration, err error) { return 0, 0, errNoCPU }
func dieWithParent(cmd *exec.Cmd)                          {}
