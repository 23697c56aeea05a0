module example.com/habits

go 1.26
