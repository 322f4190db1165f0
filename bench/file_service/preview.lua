-- GET /v1/file_tool/preview/{request_id}/{file_name} over the seeded files,
-- picked at random: one get_by_file_id and one file read per request.
-- usage: wrk ... -s preview.lua -- FILES
local files = 1000

function init(args)
    files = tonumber(args[1]) or files
    math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 1000)
end

function request()
    local i = math.random(0, files - 1)
    return wrk.format("GET", string.format("/v1/file_tool/preview/seed-%d/file-%d.md", i % 100, i))
end
