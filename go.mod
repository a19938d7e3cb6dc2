module github.com/vigil-agent/vigil

go 1.26.0
