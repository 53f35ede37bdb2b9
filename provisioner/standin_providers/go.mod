module clawdet.local/standin_providers

go 1.25.0

require github.com/pulumi/pulumi/sdk/v3 v3.259.0
