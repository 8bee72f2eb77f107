module pharos.test/h2proxy

go 1.22
